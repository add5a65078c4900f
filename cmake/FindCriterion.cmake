# Finds Criterion: through pkg-config where there is one, else by its header and library (as on
# the device machine, where bench/prepare-device-deps.sh carries it; pass its folder in
# CMAKE_PREFIX_PATH). Defines Criterion_FOUND and the imported target Criterion::Criterion.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PC_CRITERION QUIET criterion)
endif()
find_path(CRITERION_INCLUDE_DIR criterion/criterion.h HINTS ${PC_CRITERION_INCLUDE_DIRS})
find_library(CRITERION_LIBRARY criterion HINTS ${PC_CRITERION_LIBRARY_DIRS})

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Criterion REQUIRED_VARS CRITERION_LIBRARY CRITERION_INCLUDE_DIR)

if(Criterion_FOUND AND NOT TARGET Criterion::Criterion)
  add_library(Criterion::Criterion UNKNOWN IMPORTED)
  set_target_properties(Criterion::Criterion PROPERTIES
      IMPORTED_LOCATION "${CRITERION_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${CRITERION_INCLUDE_DIR}")
endif()
mark_as_advanced(CRITERION_INCLUDE_DIR CRITERION_LIBRARY)

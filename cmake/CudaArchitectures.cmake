# Default GPU architectures when the caller sets none: Ampere (sm_80) and Hopper (sm_90), the
# data-centre GPUs closs is tuned for. Override with -DCMAKE_CUDA_ARCHITECTURES=... (e.g. "native").
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()

#!/usr/bin/env python3
"""Checks the compiled SASS of CUDA kernels against rule files, without a GPU.

    sass_check.py BINARY --rules DIR_OR_FILE... [--arch sm_90] [--report FILE]

BINARY is anything cuobjdump reads (libcloss.so, an object file). Each rule file holds one line
per kernel group, `#` comments and blank lines ignored:

    <kernel-name regex> <rule> [<rule> ...]

The regex is searched (Python `re.search`) in each kernel's demangled name; a line that matches
no kernel is an error, so a renamed kernel cannot pass silently. Rules:

    spill=0        no local-memory loads or stores (LDL/STL) in the kernel
    stack=0        no stack frame (cuobjdump -res-usage STACK:0)
    has:OPCODE     at least one instruction whose opcode starts with OPCODE (e.g. has:HMMA)
    lacks:OPCODE   no such instruction (lacks:LD. is a generic load: LD.E…, not LDG, LDS, LDSM)

--report writes, for every kernel a rule names, its registers, stack, local-memory instructions
and the static counts of the whole kernel and of its outermost loop that holds an HMMA (else its
largest loop): all instructions, and HMMA, FFMA, MUFU, LDSM (ldmatrix), LDS, LDGSTS (cp.async),
SHFL and BAR by opcode; the per-iteration instruction mix the benchmark notes predict from.
Static counts: a loop body's instructions once, whatever the trip count, and every branch of it.

cuobjdump comes from --cuobjdump, $CUOBJDUMP, PATH, or PyPI's nvidia-cuda-cuobjdump; nvdisasm,
which `cuobjdump -sass` runs, from $NVDISASM, PATH, or PyPI's nvidia-cuda-nvdisasm (both installed by
scripts/install-deps.sh, pinned in scripts/constraints.txt). A missing tool is named, with how to
get it; the check is then skipped (exit 77), unless $CI is set, where it fails. `--find-tools`
prints where the two tools are and exits 0, or names the missing one and exits 1.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

SKIP = 77
COUNTED = ("HMMA", "FFMA", "MUFU", "LDSM", "LDS", "LDGSTS", "SHFL", "BAR")


def find_tool(name, given=None):
    """The path of cuobjdump or nvdisasm: given, $CUOBJDUMP/$NVDISASM, PATH, then PyPI's wheel."""
    for candidate in (given, os.environ.get(name.upper()), shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    try:
        import nvidia  # PyPI's nvidia-cuda-cuobjdump / -nvdisasm: nvidia/cu*/bin/<name>
    except ImportError:
        return None
    for root in nvidia.__path__:
        for path in sorted(glob.glob(os.path.join(root, "*", "bin", name))):
            if os.access(path, os.X_OK):
                return path
    return None


def find_tools(given_cuobjdump):
    """({"cuobjdump": path, "nvdisasm": path}, None), or (None, what is missing and how to get it)."""
    tools = {"cuobjdump": find_tool("cuobjdump", given_cuobjdump), "nvdisasm": find_tool("nvdisasm")}
    missing = [name for name, path in tools.items() if not path]
    if not missing:
        return tools, None
    wheels = " ".join(f"nvidia-cuda-{name}" for name in missing)
    return None, (f"{' and '.join(missing)} not found (cuobjdump -sass needs both): run "
                  f"scripts/install-deps.sh, which installs PyPI's {wheels} at the version pinned "
                  "in scripts/constraints.txt, or put the tools on PATH")


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"sass_check: {' '.join(command)} failed:\n{result.stderr}")
    return result.stdout


def demangle(names):
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {name: name for name in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    return {name: out[k] if k < len(out) and out[k] else name for k, name in enumerate(names)}


INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")


def parse_sass(text):
    """{mangled name: [(address, opcode, operands)]} for every function of the listing."""
    functions, current = {}, None
    for line in text.splitlines():
        header = re.search(r"Function : (\S+)", line)
        if header:
            current = functions.setdefault(header.group(1), [])
            continue
        match = INSTRUCTION.search(line)
        if match and current is not None:
            current.append((int(match.group(1), 16), match.group(2), match.group(3)))
    return functions


def parse_resources(text):
    """{mangled name: {"REG": n, "STACK": n, ...}} from cuobjdump -res-usage."""
    resources, current = {}, None
    for line in text.splitlines():
        header = re.search(r"Function (\S+?):?\s*$", line)
        if header:
            current = header.group(1).rstrip(":")
            continue
        if current and "REG:" in line:
            resources[current] = {key: int(value) for key, value in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)}
            current = None
    return resources


def loops(instructions):
    """(first, last) address of every backward branch's span: the loops."""
    spans = []
    for address, opcode, operands in instructions:
        if opcode.startswith("BRA"):
            target = re.search(r"0x([0-9a-f]+)", operands)
            if target and int(target.group(1), 16) <= address:
                spans.append((int(target.group(1), 16), address))
    return spans


def counts(instructions, span=None):
    """All instructions ("all") and those of each COUNTED opcode (its first dotted part)."""
    result = dict.fromkeys(("all",) + COUNTED, 0)
    for address, opcode, _ in instructions:
        if span and not span[0] <= address <= span[1]:
            continue
        result["all"] += 1
        base = opcode.split(".")[0]
        if base in result:
            result[base] += 1
    return result


def main_loop(instructions):
    """The outermost loop holding an HMMA, else the largest loop, else None."""
    spans = loops(instructions)
    with_mma = [s for s in spans if counts(instructions, s)["HMMA"] > 0]
    pool = with_mma or spans
    return max(pool, key=lambda s: s[1] - s[0]) if pool else None


def check(rule, instructions, resources):
    """None when the kernel satisfies the rule, else what is wrong."""
    local = sum(1 for _, opcode, _ in instructions if opcode.startswith(("LDL", "STL")))
    if rule == "spill=0":
        return None if local == 0 else f"{local} local-memory instructions (LDL/STL)"
    if rule == "stack=0":
        stack = resources.get("STACK", 0)
        return None if stack == 0 else f"a {stack}-byte stack frame"
    kind, _, opcode = rule.partition(":")
    if kind in ("has", "lacks") and opcode:
        found = sum(1 for _, name, _ in instructions if name.startswith(opcode))
        if kind == "has":
            return None if found else f"no {opcode} instruction"
        return None if not found else f"{found} {opcode} instructions"
    sys.exit(f"sass_check: unknown rule {rule!r}")


def read_rules(paths):
    rules = []
    for path in paths:
        files = sorted(glob.glob(os.path.join(path, "*.txt"))) if os.path.isdir(path) else [path]
        for name in files:
            with open(name, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    words = line.split("#", 1)[0].split()
                    if words:
                        if len(words) < 2:
                            sys.exit(f"sass_check: {name}:{number}: a regex and at least one rule")
                        rules.append((f"{os.path.basename(name)}:{number}", re.compile(words[0]), words[1:]))
    return rules


def short(name):
    """The demangled name without the anonymous namespace and the parameter list."""
    name = re.sub(r"\(anonymous namespace\)::", "", name)
    return re.sub(r"\((closs_contrastive_launch|closs_rowwise_launch)[^)]*\)$", "", name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary", nargs="?")
    parser.add_argument("--rules", nargs="+", help="rule files or folders of *.txt")
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--report", help="write the per-kernel resource and instruction table here")
    parser.add_argument("--cuobjdump")
    parser.add_argument("--find-tools", action="store_true", help="say where the tools are, check nothing")
    args = parser.parse_args()
    if args.find_tools:
        tools, missing = find_tools(args.cuobjdump)
        print(missing or "\n".join(f"{name}: {path}" for name, path in tools.items()))
        return 1 if missing else 0
    if not args.binary or not args.rules:
        parser.error("BINARY and --rules are required")

    tools, missing = find_tools(args.cuobjdump)
    if missing:
        if os.environ.get("CI"):
            sys.exit(f"sass_check: {missing}")
        print(f"SKIP: {missing}")
        return SKIP
    # cuobjdump runs nvdisasm from PATH (or NVDISASM_PATH): give it the one found.
    nvdisasm_dir = os.path.dirname(os.path.abspath(tools["nvdisasm"]))
    os.environ["PATH"] = nvdisasm_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ["NVDISASM_PATH"] = nvdisasm_dir
    tool = tools["cuobjdump"]
    sass = parse_sass(run([tool, "-sass", "-arch", args.arch, args.binary]))
    resources = parse_resources(run([tool, "-res-usage", "-arch", args.arch, args.binary]))
    if not sass:
        sys.exit(f"sass_check: no {args.arch} code in {args.binary}")
    names = demangle(sorted(sass))

    failures, checked = [], {}
    for where, pattern, rule_list in read_rules(args.rules):
        matched = [m for m in sorted(sass) if pattern.search(names[m])]
        if not matched:
            failures.append(f"{where}: {pattern.pattern!r} matches no {args.arch} kernel")
        for mangled in matched:
            checked[mangled] = True
            for rule in rule_list:
                problem = check(rule, sass[mangled], resources.get(mangled, {}))
                if problem:
                    failures.append(f"{where}: {short(names[mangled])}: {rule} fails: {problem}")
    print(f"sass_check: {len(checked)} kernels of {args.binary} ({args.arch}) against the rules")

    if args.report:
        with open(args.report, "w", encoding="utf-8") as out:
            out.write(f"# SASS of {os.path.basename(args.binary)} for {args.arch} (tests/sass_check.py)\n\n")
            out.write("Static instruction counts; `loop` is the kernel's outermost loop holding an HMMA "
                      "(else its largest loop), counted once per iteration.\n\n")
            kinds = ("all",) + COUNTED
            out.write("| kernel | registers | stack | LDL/STL | " + " | ".join(kinds) + " | "
                      + " | ".join(f"loop {k}" for k in kinds) + " |\n")
            out.write("| --- " * (4 + 2 * len(kinds)) + "|\n")
            for mangled in sorted(checked, key=lambda m: short(names[m])):
                code, res = sass[mangled], resources.get(mangled, {})
                total = counts(code)
                span = main_loop(code)
                inner = counts(code, span) if span else dict.fromkeys(kinds, "")
                local = sum(1 for _, opcode, _ in code if opcode.startswith(("LDL", "STL")))
                out.write(f"| `{short(names[mangled])}` | {res.get('REG', '?')} | {res.get('STACK', '?')} | {local} | "
                          + " | ".join(str(total[k]) for k in kinds) + " | "
                          + " | ".join(str(inner[k]) for k in kinds) + " |\n")
        print(f"sass_check: report in {args.report}")

    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

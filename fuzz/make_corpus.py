#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora, fuzz/corpus/npy/ and fuzz/corpus/cli/.

The generated files are committed, so fuzzing needs no Python; run this again after changing it
(it first removes the files it would write, so a renamed seed leaves no stale copy). The seeds
are small (under 1 KiB) and each reaches a different part of the parsers: libFuzzer mutates
from them, and tests/test_fuzz_regressions.c replays them through the normal test build.

    python3 fuzz/make_corpus.py
"""

import io
import pathlib
import struct

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
NPY_DIR = HERE / "corpus" / "npy"
CLI_DIR = HERE / "corpus" / "cli"


def npy_bytes(array, version=(1, 0)):
    """The file NumPy itself writes for `array` in format `version`."""
    out = io.BytesIO()
    np.lib.format.write_array(out, array, version=version, allow_pickle=False)
    return out.getvalue()


def hand_npy(header, data=b"", major=1, length=None):
    """A .npy file with the header text exactly as given (no padding added) and `data`;
    `length` overrides the header length field."""
    header = header.encode("latin-1") if isinstance(header, str) else header
    length = len(header) if length is None else length
    size_field = struct.pack("<H", length) if major == 1 else struct.pack("<I", length)
    return b"\x93NUMPY" + bytes([major, 0]) + size_field + header + data


def dict_header(descr="<f8", fortran="False", shape="(3,)"):
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }\n" % (descr, fortran, shape)


def npy_seeds():
    rng = np.random.default_rng(0)
    f8_23 = rng.standard_normal((2, 3))
    seeds = {
        # Accepted: every dtype, format version and shape kind the reader takes.
        "v1_f8_2x3.npy": npy_bytes(f8_23),
        "v1_f4_3.npy": npy_bytes(np.arange(3, dtype="<f4")),
        "v1_i4_2x3.npy": npy_bytes(np.arange(6, dtype="<i4").reshape(2, 3)),
        "v1_i8_3.npy": npy_bytes(np.arange(3, dtype="<i8")),
        "v1_f8_scalar.npy": npy_bytes(np.array(1.5)),
        "v1_f4_empty.npy": npy_bytes(np.zeros((0,), dtype="<f4")),
        "v1_f8_0x3.npy": npy_bytes(np.zeros((0, 3))),
        "v2_f4_2x3.npy": npy_bytes(f8_23.astype("<f4"), version=(2, 0)),
        "v3_i8_3.npy": npy_bytes(np.arange(3, dtype="<i8"), version=(3, 0)),
        "v1_fortran_1d.npy": hand_npy(dict_header(fortran="True"), bytes(24)),
        "v1_hand_double_quotes.npy": hand_npy(
            '{"shape": (3L, ), "fortran_order": False, "descr": "|i8"}   \n', bytes(24)),
        "v1_hand_equals_order.npy": hand_npy(dict_header("=f4", shape="(1,2,)"), bytes(8)),
        # Refused: each a different rule.
        "bad_empty.npy": b"",
        "bad_magic.npy": b"\x93NUMPX\x01\x00",
        "bad_truncated_prelude.npy": npy_bytes(f8_23)[:9],
        "bad_truncated_header.npy": npy_bytes(f8_23)[:40],
        "bad_truncated_data.npy": npy_bytes(f8_23)[:-5],
        "bad_trailing_data.npy": npy_bytes(f8_23) + b"\x00",
        "bad_version_4.npy": hand_npy(dict_header(), bytes(24), major=4),
        "bad_header_length_0.npy": hand_npy("", major=1),
        "bad_header_length_huge_v2.npy": hand_npy(dict_header(), major=2, length=0xFFFFFFF0),
        "bad_no_newline.npy": hand_npy(dict_header()[:-1] + " ", bytes(24)),
        "bad_big_endian.npy": npy_bytes(np.arange(3, dtype=">f8")),
        "bad_fortran_2d.npy": npy_bytes(np.asfortranarray(f8_23)),
        "bad_complex.npy": npy_bytes(np.zeros(2, dtype="<c16")),
        "bad_bool.npy": npy_bytes(np.zeros(2, dtype="|b1")),
        "bad_structured.npy": npy_bytes(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])),
        "bad_dict_unclosed.npy": hand_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,)\n",
                                          bytes(24)),
        "bad_dict_unknown_key.npy": hand_npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': 1}\n", bytes(24)),
        "bad_dict_duplicate_key.npy": hand_npy(
            "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (3,)}\n",
            bytes(24)),
        "bad_dict_missing_shape.npy": hand_npy("{'descr': '<f8', 'fortran_order': False}\n"),
        "bad_dict_escape.npy": hand_npy(dict_header(descr="<f\\x38"), bytes(24)),
        "bad_dict_unterminated_string.npy": hand_npy("{'descr': '<f8\n"),
        "bad_shape_not_tuple.npy": hand_npy(dict_header(shape="(3)"), bytes(24)),
        "bad_shape_negative.npy": hand_npy(dict_header(shape="(-3,)"), bytes(24)),
        "bad_shape_huge.npy": hand_npy(dict_header(shape="(4611686018427387904, 4)")),
        "bad_shape_product_overflow.npy": hand_npy(
            dict_header(shape="(4294967296, 4294967296)")),
        "bad_shape_dimension_overflow.npy": hand_npy(
            dict_header(shape="(9223372036854775808,)")),
        "bad_shape_65_dims.npy": hand_npy(dict_header(shape="(" + "1, " * 65 + ")")),
        "bad_fortran_not_bool.npy": hand_npy(dict_header(fortran="Truex"), bytes(24)),
        "bad_control_bytes.npy": hand_npy(b"{'de\x01scr\xff': '<f8'}\n"),
    }
    return seeds


def argv(*args):
    """An argument vector as the CLI fuzzer reads it: NUL-separated strings."""
    return b"\0".join(a.encode() for a in args)


def cli_seeds():
    def eval_line(loss, *extra):
        return argv("eval", loss, "--in", "in", "--out", "out", *extra)

    return {
        # Accepted: every loss with each of its parameters, and every option spelling.
        "pair.argv": eval_line("pair", "margin=0.5", "distance=cosine", "reduction=sum",
                               "check_inputs=1"),
        "triplet.argv": eval_line("triplet", "margin=-0.25", "distance=sqeuclidean", "swap=1",
                                  "reduction=none"),
        "ntxent.argv": eval_line("ntxent", "temperature=0.2", "normalize=0", "--dtype", "f32"),
        "supcon.argv": eval_line("supcon", "temperature=0x1p-3", "base_temperature=0.07",
                                 "normalize=1", "reduction=mean", "--device", "cpu"),
        "cosine.argv": eval_line("cosine", "margin=-1e-3", "squared=1", "check_inputs=0"),
        "params_first.argv": argv("eval", "temperature=0.5", "--in=data", "ntxent",
                                  "--out=result", "--device=cuda", "--dtype=bf16"),
        "help_late.argv": argv("eval", "pair", "--in", "in", "-h"),
        "help_as_value.argv": argv("eval", "pair", "--in", "--help", "--out", "out"),
        # Refused: each a different rule.
        "empty.argv": b"",
        "no_loss.argv": argv("eval", "--in", "in", "--out", "out"),
        "unknown_loss.argv": eval_line("hinge"),
        "second_loss.argv": eval_line("pair", "triplet"),
        "unknown_option.argv": eval_line("pair", "--bogus=1"),
        "short_option.argv": eval_line("pair", "-x"),
        "option_twice.argv": eval_line("pair", "--in", "again"),
        "option_no_value.argv": eval_line("pair", "--dtype"),
        "option_empty_value.argv": argv("eval", "pair", "--in", "in", "--out="),
        "missing_out.argv": argv("eval", "pair", "--in", "in"),
        "bad_device.argv": eval_line("pair", "--device", "gpu"),
        "bad_dtype.argv": eval_line("pair", "--dtype", "f128"),
        "param_unknown.argv": eval_line("pair", "foo=1"),
        "param_other_loss.argv": eval_line("ntxent", "margin=1"),
        "param_no_name.argv": eval_line("pair", "=1"),
        "param_twice.argv": eval_line("pair", "margin=1", "margin=2"),
        "param_not_finite.argv": eval_line("pair", "margin=1e999"),
        "param_trailing_text.argv": eval_line("cosine", "margin=0.5x"),
        "param_bad_flag.argv": eval_line("triplet", "swap=2"),
        "param_bad_distance.argv": eval_line("pair", "distance=sqeuclidean"),
        "param_bad_reduction.argv": eval_line("supcon", "reduction=avg"),
        "empty_strings.argv": b"eval\0\0pair\0\0--in\0\0=\0",
    }


def write_all(directory, seeds, suffix):
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*" + suffix):
        old.unlink()
    for name, data in seeds.items():
        assert len(data) < 1024, (name, len(data))
        (directory / name).write_bytes(data)


def main():
    write_all(NPY_DIR, npy_seeds(), ".npy")
    write_all(CLI_DIR, cli_seeds(), ".argv")
    print(f"wrote {len(npy_seeds())} seeds to {NPY_DIR} and {len(cli_seeds())} to {CLI_DIR}")


if __name__ == "__main__":
    main()

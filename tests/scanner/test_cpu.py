from dfscan.scanner.model.cpu import cpu_flags, has_vnni, int8_kernels, int8_path

EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n\nprocessor\t: 1\nflags : x\n"


def test_flags_come_from_the_first_cpu():
    assert cpu_flags(EPYC) == {"fpu", "sse2", "avx", "avx2", "fma", "bmi2"}
    assert cpu_flags("model name: x\n") == frozenset()


def test_the_best_int8_path_is_named():
    assert int8_path(cpu_flags(EPYC)) == "AVX2 (no VNNI)"
    assert int8_path(frozenset({"avx2", "avx512bw", "avx512_vnni"})) == "AVX-512 VNNI"
    assert int8_path(frozenset({"avx2", "avx_vnni"})) == "AVX-VNNI"
    assert int8_path(frozenset({"avx2", "avx512bw"})) == "AVX-512 (no VNNI)"
    assert int8_path(frozenset({"fp", "asimd", "asimddp"})) == "Arm dot product"
    assert int8_path(frozenset({"sse2"})) == "baseline SIMD"
    assert int8_path(frozenset()).startswith("unknown")


def test_this_machine_has_a_name():
    assert int8_kernels()


def test_vnni_is_read_from_the_flags():
    assert has_vnni() == ("VNNI" in int8_kernels() and "no VNNI" not in int8_kernels()) or (
        "AMX" in int8_kernels()
    )

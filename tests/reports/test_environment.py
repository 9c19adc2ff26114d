"""reports.environment: the hardware/software line under every table and report."""

from cnnlab.hardware import cpu_has_native_bf16
from cnnlab.reports.environment import cpu_features, environment_info, environment_line

INFO = {"cpu": "AMD EPYC", "cpu_count": 2, "cpu_capability": "AVX2", "device": "cpu",
        "python": "3.11.7", "torch": "2.13.0+cpu", "cnnlab": "0.1.0"}  # fmt: skip


def test_line_names_cpu_threads_load_and_versions():
    line = environment_line(INFO | {"torch_threads": 2, "load_average_1min": 1.5})
    assert line == (
        "AMD EPYC (2 cores, AVX2), device cpu, 2 threads, load average 1.5 at start; "
        "Python 3.11.7, torch 2.13.0+cpu, cnnlab 0.1.0"
    )
    assert ", 1 thread; " in environment_line(INFO | {"torch_threads": 1})


def test_info_of_this_machine_gives_a_line():
    info = environment_info()
    assert info["torch_threads"] >= 1 and info["cpu_count"] >= 1
    assert info["torch"] in environment_line(info)


def test_the_line_says_whether_bf16_is_native():
    assert cpu_features(INFO) == "AVX2"  # a record from before the field: the vector unit alone
    assert cpu_features(INFO | {"cpu_capability": "AVX512", "cpu_native_bf16": True}) == (
        "AVX512, native bf16"
    )
    line = environment_line(INFO | {"torch_threads": 2, "cpu_native_bf16": False})
    assert "(2 cores, AVX2), " in line
    assert environment_info()["cpu_native_bf16"] == cpu_has_native_bf16()

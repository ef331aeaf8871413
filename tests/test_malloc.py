"""The allocator tuning for streamed runs: done on glibc, without starting a process to find libc."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from xentcli import malloc


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the tuning is for glibc")
def test_glibc_allocator_is_tuned_without_a_subprocess(monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError("started a process to find libc (ldconfig): a cost paid by every streamed run")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setattr(malloc, "_done", False)
    assert malloc.reuse_block_memory() is True
    assert malloc.reuse_block_memory() is True  # once per process, then remembered


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(malloc, "_done", False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert malloc.reuse_block_memory() is False

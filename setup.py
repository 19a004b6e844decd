"""Packaging beyond pyproject.toml: a wheel carries the C runtime's sources and the demo's example
(ftmb_instrument/_bundled/{runtime,examples}), so an installed ftmb-instrument builds and links its
runtime like a checkout does (ftmb_instrument/bundle.py finds them and says where they are built)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = {  # checkout directory -> the files of it a wheel carries
    "runtime": ["Makefile", "src/*.c", "src/*.h", "include/ftmb/*.h", "tools/*.c", "tools/*.h"],
    "examples": ["Makefile", "nat/*.c"],
}


class BuildPyWithBundle(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install uses the checkout's own runtime/ and examples/
            return
        for top, patterns in BUNDLED.items():
            for pattern in patterns:
                files = sorted((HERE / top).glob(pattern))
                if not files:
                    raise SystemExit(f"setup.py: {top}/{pattern}: no such file in {HERE}; is the checkout complete?")
                for src in files:
                    dst = Path(self.build_lib) / "ftmb_instrument" / "_bundled" / top / src.relative_to(HERE / top)
                    self.mkpath(str(dst.parent))
                    self.copy_file(str(src), str(dst))


setup(cmdclass={"build_py": BuildPyWithBundle})

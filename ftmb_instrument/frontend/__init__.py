"""The frontend: compile commands in, program facts out. Only this package imports clang.cindex."""

from .clang_tu import TuJob, TuResult, parse_translation_unit
from .compdb import CompileCommand, from_files, load_database, sanitize

__all__ = ["CompileCommand", "TuJob", "TuResult", "from_files", "load_database", "parse_translation_unit", "sanitize"]

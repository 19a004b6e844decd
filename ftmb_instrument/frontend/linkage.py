"""What a translation unit defines and which project symbols it uses without defining them: whether
a unit compiled on its own (`ftmb-cc -c` without a plan) can be the whole program.

A used symbol is a library's when its first declaration is in a library header: a system header
(the compiler's own include directories, `-isystem`) or a header installed under /usr or /opt that
is not under the project root (`-I/usr/include/dpdk` names DPDK's). Every other declaration (in the
unit itself, in the project's headers wherever they are) makes it a project symbol, which some other
unit of the program must define. Compiler builtins (`__builtin_*`, `__sync_*`, `__atomic_*`,
declared implicitly where they are first used) are the compiler's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from clang import cindex as ci

from .clang_tu import _setup_lib, _under, children

CK = ci.CursorKind
INSTALLED = ("/usr/", "/opt/")
BUILTINS = ("__builtin_", "__sync_", "__atomic_", "__c11_atomic_")  # the compiler's, declared where first used


@dataclass(frozen=True)
class UnitLinkage:
    file: str
    defines: frozenset[str]  # USRs of the external functions and variables it defines (tentatively too)
    defines_main: bool
    uses: tuple[tuple[str, str, str], ...]  # (usr, name, "path:line" of its first use): project symbols it references


def unit_linkage(file: str, args: tuple[str, ...], project_root: str) -> UnitLinkage | None:
    """The linkage facts of `file` compiled with `args`; None when it does not parse (the analysis
    then reports the unit's first error)."""
    _setup_lib()
    try:
        tu = ci.Index.create().parse(file, args=list(args))
    except ci.TranslationUnitLoadError:
        return None
    if any(d.severity >= ci.Diagnostic.Error for d in tu.diagnostics):
        return None
    root = os.path.realpath(project_root)

    installed: dict[str, bool] = {}

    def library(loc: ci.SourceLocation) -> bool:
        if loc.file is None or loc.is_in_system_header:
            return True
        name = loc.file.name
        if name not in installed:
            path = os.path.realpath(name)
            installed[name] = path.startswith(INSTALLED) and not _under(path, root)
        return installed[name]

    defines: set[str] = set()
    defines_main = False
    uses: dict[str, tuple[str, str]] = {}
    for top in children(tu.cursor):
        if library(top.location):
            continue
        if top.kind in (CK.FUNCTION_DECL, CK.VAR_DECL) and top.linkage == ci.LinkageKind.EXTERNAL and (
                top.is_definition() or (top.kind == CK.VAR_DECL and top.storage_class != ci.StorageClass.EXTERN)):
            defines.add(top.get_usr())
            defines_main = defines_main or (top.kind == CK.FUNCTION_DECL and top.spelling == "main")
        stack = [top]
        while stack:  # preorder without recursion (Cursor.walk_preorder recurses)
            c = stack.pop()
            stack.extend(reversed(children(c)))
            if c.kind != CK.DECL_REF_EXPR:
                continue
            ref = c.referenced
            if ref is None or ref.kind not in (CK.FUNCTION_DECL, CK.VAR_DECL) or ref.linkage != ci.LinkageKind.EXTERNAL:
                continue
            usr = ref.get_usr()
            if ref.spelling.startswith(BUILTINS):
                continue
            if usr not in uses and not library(ref.canonical.location):
                uses[usr] = (ref.spelling, f"{os.path.realpath(c.location.file.name)}:{c.location.line}")
    return UnitLinkage(file, frozenset(defines), defines_main,
                       tuple((usr, name, where) for usr, (name, where) in uses.items()))

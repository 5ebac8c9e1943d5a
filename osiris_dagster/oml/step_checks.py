"""Checks of the `steps` list: ids, each step's keys, component, mode, needs and config, and
what only the steps together show (dependency cycles, writers without an upstream table, a
component's check of its queries)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from osiris_dagster.core.naming import (
    assets_read_by_query,
    query_visible_names,
    step_names,
    upstream_view_names,
)
from osiris_dagster.oml.config_checks import check_config
from osiris_dagster.oml.diagnostics import Collector
from osiris_dagster.oml.model import Step, freeze
from osiris_dagster.oml.specs import OML_MODES, ComponentSpec, get_spec
from osiris_dagster.oml.yaml_lines import LineDict, LineList, not_text_hint, to_plain

KNOWN_STEP = {"id", "component", "mode", "needs", "config"}
IGNORED_STEP = {"inputs", "outputs", "retry", "timeout", "when", "branch", "fan_out", "fan_in",
                "hints", "labels", "description"}


def check_steps(steps_raw: LineList, out: Collector,
                deps: Mapping[str, Sequence[str]] | None = None) -> list[Step]:
    ids: dict[str, int] = {}
    entries: list[tuple[int, LineDict, str | None]] = []
    for index, raw in enumerate(steps_raw):
        line = steps_raw.line_of(index)
        if not isinstance(raw, LineDict):
            out.error(line, f"steps[{index}] must be a mapping with id, component, mode, config")
            continue
        sid = raw.get("id")
        if "id" not in raw:
            out.error(raw.line, f"steps[{index}] is missing required key 'id'")
            sid = None
        elif not isinstance(sid, str) or not sid.strip():
            out.error(raw.line_of("id"), f"steps[{index}].id must be a non-empty string"
                      + not_text_hint(sid))
            sid = None
        elif sid in ids:
            out.error(raw.line_of("id"), f"duplicate step id (first defined on line {ids[sid]})",
                      sid)
        else:
            ids[sid] = raw.line_of("id")
        entries.append((index, raw, sid))
    _check_name_clashes(ids, out)

    steps: list[Step] = []
    graph: dict[str, tuple[tuple[str, ...], int]] = {}
    previous: str | None = None
    for index, raw, sid in entries:
        duplicate = sid is not None and ids.get(sid) != raw.line_of("id")
        step, needs = _check_step(index, raw, sid, previous, ids, out)
        if step is not None and not duplicate:
            steps.append(step)
        if sid is not None and needs is not None and not duplicate:
            graph[sid] = (tuple(n for n in needs if n in ids and n != sid), raw.line)
        previous = sid if sid is not None else previous
    _check_cycles(graph, out)
    raws = {sid: raw for _i, raw, sid in entries if sid is not None}
    _check_writer_inputs(steps, raws, out)
    _check_queries(steps, raws, out, deps or {})
    return steps if len(steps) == len(entries) else []


def _check_name_clashes(ids: Mapping[str, int], out: Collector) -> None:
    """Distinct ids that become one name (``a-b``, ``a_b``, ``A-B``): an error on the later one,
    naming both ids and lines (Dagster would refuse the pipeline's definitions at run time)."""
    first: dict[tuple[int, str], str] = {}
    for sid, line in ids.items():
        for kind, name in enumerate(step_names(sid)):
            other = first.setdefault((kind, name.lower()), sid)
            if other != sid:
                theirs = step_names(other)[kind]
                same = f"the same name '{name}'" if name == theirs else \
                    f"the names '{name}' and '{theirs}', the same ignoring case,"
                out.error(line, f"step id '{sid}' and step id '{other}' (line {ids[other]}) "
                                f"become {same} in Dagster and in file names: ids must differ "
                                "in more than case and characters other than letters, digits "
                                "and '_'", sid)
                break


def step_label(item: Any) -> str | None:
    """A step's id if it has a usable one."""
    sid = item.get("id") if isinstance(item, dict) else None
    return sid if isinstance(sid, str) and sid.strip() else None


def _check_step(index: int, raw: LineDict, sid: str | None, previous: str | None,
                ids: Mapping[str, int], out: Collector
                ) -> tuple[Step | None, tuple[str, ...] | None]:
    """The step if valid, and its needs if they could be read (for the cycle check)."""
    _warn_unused_keys(raw, sid, out)
    spec, component_ok = _component_spec(raw, sid, out)
    mode_ok = _check_mode(raw, spec, sid, out)
    implicit = "needs" not in raw
    if implicit:
        needs: tuple[str, ...] = (previous,) if previous is not None and index > 0 else ()
        needs_readable = needs_ok = True
    else:
        needs, needs_readable, needs_ok = _explicit_needs(raw, sid, ids, out)
    config, config_ok = _config(raw, spec, sid, out)

    usable_needs = needs if needs_readable else None
    ok = sid is not None and component_ok and mode_ok and needs_ok and config_ok
    if not ok or spec is None or sid is None:
        return None, usable_needs
    return Step(id=sid, component=spec.name, mode=str(raw.get("mode")), needs=needs,
                implicit_needs=implicit, config=freeze(to_plain(config)), line=raw.line), \
        usable_needs


def _warn_unused_keys(raw: LineDict, sid: str | None, out: Collector) -> None:
    """Step keys OML v0.1.0 ignores (or does not know) are warnings."""
    for key in raw:
        if key in KNOWN_STEP or (isinstance(key, str) and key.startswith("x-")):
            continue
        if key in IGNORED_STEP:
            out.warning(raw.line_of(key), f"step key '{key}' has no effect in OML v0.1.0 and is "
                                          "ignored", sid)
        else:
            out.warning(raw.line_of(key), f"unknown step key '{key}' is ignored", sid)


def _component_spec(raw: LineDict, sid: str | None, out: Collector
                    ) -> tuple[ComponentSpec | None, bool]:
    """The spec of the step's component, and whether `component` is valid."""
    component = raw.get("component")
    if "component" not in raw:
        out.error(raw.line, "missing required key 'component'", sid)
        return None, False
    if not isinstance(component, str):
        out.error(raw.line_of("component"), "'component' must be a string", sid)
        return None, False
    spec = get_spec(component)
    if spec is None:
        from osiris_dagster.oml.specs import SPECS

        out.error(raw.line_of("component"), f"unknown component '{component}' (known: "
                                            f"{', '.join(sorted(SPECS))})", sid)
        return None, False
    return spec, True


def _check_mode(raw: LineDict, spec: ComponentSpec | None, sid: str | None,
                out: Collector) -> bool:
    """Whether `mode` is an OML mode the component allows."""
    mode = raw.get("mode")
    if "mode" not in raw:
        out.error(raw.line, "missing required key 'mode' (read, transform or write)", sid)
        return False
    if mode not in OML_MODES:
        out.error(raw.line_of("mode"), f"mode '{mode}' is not one of read, transform, write",
                  sid)
        return False
    if spec is not None and OML_MODES[mode] not in spec.modes:
        allowed = ", ".join(m for m, c in OML_MODES.items() if c in spec.modes)
        out.error(raw.line_of("mode"), f"mode '{mode}' is not allowed for component "
                                       f"'{spec.name}' (allowed: {allowed})", sid)
        return False
    return True


def _explicit_needs(raw: LineDict, sid: str | None, ids: Mapping[str, int], out: Collector
                    ) -> tuple[tuple[str, ...], bool, bool]:
    """A step's own `needs` list: the needs, whether the list could be read, and whether
    every entry is a valid upstream."""
    raw_needs = raw.get("needs")
    if raw_needs is None:
        raw_needs = LineList()
    if not isinstance(raw_needs, list) or not all(isinstance(n, str) for n in raw_needs):
        out.error(raw.line_of("needs"), "'needs' must be a list of step ids", sid)
        return (), False, False
    ok = True
    seen: set[str] = set()
    for i, n in enumerate(raw_needs):
        nline = raw_needs.line_of(i) if isinstance(raw_needs, LineList) else \
            raw.line_of("needs")
        if n == sid:
            out.error(nline, "a step cannot depend on itself", sid)
            ok = False
        elif n not in ids:
            out.error(nline, f"needs unknown step '{n}' (steps: {', '.join(ids)})", sid)
            ok = False
        elif n in seen:
            out.warning(nline, f"'{n}' is listed twice in needs", sid)
        seen.add(n)
    return tuple(dict.fromkeys(raw_needs)), True, ok


def _config(raw: LineDict, spec: ComponentSpec | None, sid: str | None, out: Collector
            ) -> tuple[Any, bool]:
    """The step's `config` (a missing or null one is empty), and whether it is a mapping; its
    keys are checked against the component's spec."""
    config = raw.get("config", LineDict())
    if config is None:
        config = LineDict()
    if not isinstance(config, dict):
        out.error(raw.line_of("config"), "'config' must be a mapping", sid)
        return config, False
    if spec is not None:
        check_config(spec, config, raw, sid, out)
    return config, True


def _check_cycles(nodes: Mapping[str, tuple[tuple[str, ...], int]], out: Collector) -> None:
    graph = {sid: needs for sid, (needs, _line) in nodes.items()}
    lines = {sid: line for sid, (_needs, line) in nodes.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    reported: set[frozenset[str]] = set()

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    out.error(lines[nxt], "dependency cycle: " + " -> ".join(cycle), nxt)
            elif state.get(nxt) is None:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for sid in graph:
        if sid not in state:
            visit(sid, [])


def _check_writer_inputs(steps: list[Step], raws: Mapping[str, LineDict],
                         out: Collector) -> None:
    """A writer writes the rows of an upstream step; without an upstream that produces a
    table it could only fail at run time. (A step without `needs` depends on the previous
    step, as Osiris compiles it; `needs: []` means none; the first step has none.)"""
    by_id = {s.id: s for s in steps}
    for step in steps:
        spec = get_spec(step.component)
        if spec is None or spec.produces_table or any(n not in by_id for n in step.needs):
            continue  # not a writer, or an upstream already reported as invalid
        if any((up := get_spec(by_id[n].component)) and up.produces_table for n in step.needs):
            continue
        raw = raws.get(step.id)
        line = raw.line_of("needs") if raw is not None and not step.implicit_needs else step.line
        if step.needs:
            names = ", ".join(f"'{n}'" for n in step.needs)
            previous = ", the previous step" if step.implicit_needs else ""
            why = (f"its upstream {names} (a writer{previous}) produces no table"
                   if len(step.needs) == 1 else
                   f"its upstreams {names} (writers) produce no table")
        elif step.implicit_needs:
            why = "it is the first step, so it has no upstream"
        else:
            why = "it has `needs: []`, so it has no upstream"
        out.error(line, f"a writer writes the rows of an upstream step, but {why}: list the "
                        "step whose rows it writes in `needs` (a step without `needs` depends "
                        "on the previous step)", step.id)


def _check_queries(steps: list[Step], raws: Mapping[str, LineDict], out: Collector,
                   deps: Mapping[str, Sequence[str]]) -> None:
    """A component's own check of its queries (spec `query_check`), e.g. that a
    duckdb.processor query is one SELECT over its upstream views: refused at `validate`, not at
    run time. Each check gets all of its component's queries at once."""
    by_id = {s.id: s for s in steps}
    batches: dict[str, list[tuple[Step, str, list[str]]]] = {}
    for step in steps:
        spec = get_spec(step.component)
        query = step.config.get("query")
        if spec is None or not spec.query_check or not isinstance(query, str) or \
                any(n not in by_id for n in step.needs) or "${params." in query:
            continue  # (a parameter left in the text is reported, or checked at run time)
        tables = [n for n in step.needs
                  if (up := get_spec(by_id[n].component)) and up.produces_table]
        views = list(upstream_view_names(tables).values())
        views += assets_read_by_query(query, views, deps.get(step.id, ())).values()
        visible = query_visible_names(views)
        batches.setdefault(spec.query_check, []).append((step, query, visible))
    for check, items in batches.items():
        module, _, name = check.partition(":")
        found = getattr(importlib.import_module(module), name)([(q, v) for _, q, v in items])
        for (step, _query, _visible), problem in zip(items, found, strict=True):
            if problem:
                config = raws[step.id].get("config") if step.id in raws else None
                line = config.line_of("query") if isinstance(config, LineDict) else step.line
                out.error(line, problem, step.id)


def declared_deps(doc: LineDict) -> dict[str, list[str]]:
    """``x-dagster.steps.<id>.deps`` as written, for the query check (which runs before the
    x-dagster block is checked): a step's query may read the deps' ``df_<name>`` views."""
    block = doc.get("x-dagster")
    steps = block.get("steps") if isinstance(block, dict) else None
    out: dict[str, list[str]] = {}
    for sid, body in (steps.items() if isinstance(steps, dict) else ()):
        value = body.get("deps") if isinstance(body, dict) else None
        if isinstance(value, list):
            out[str(sid)] = [v.strip().strip("/") for v in value if isinstance(v, str)]
    return out

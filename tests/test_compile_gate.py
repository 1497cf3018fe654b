"""engine.pipeline.compile_gate: a compilation runs alone, the rest of the model work side by side."""

from __future__ import annotations

import threading

import pytest

from engine.pipeline.compile_gate import MODEL_GATE, CompileGate


def _holder(gate: CompileGate, exclusive: bool, entered: threading.Event, release: threading.Event):
    def hold():
        with gate.exclusive() if exclusive else gate.shared():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def test_a_compile_waits_for_work_under_way_and_later_work_waits_for_it():
    gate = CompileGate()
    events = {name: (threading.Event(), threading.Event()) for name in ("step", "compile", "later")}
    step = _holder(gate, False, *events["step"])
    assert events["step"][0].wait(5)
    compile_ = _holder(gate, True, *events["compile"])
    assert not events["compile"][0].wait(0.3)  # the other device's step is still running
    later = _holder(gate, False, *events["later"])
    assert not events["later"][0].wait(0.3)  # a waiting compile goes first
    events["step"][1].set()
    assert events["compile"][0].wait(5)
    assert not events["later"][0].wait(0.3)  # nothing runs beside a compile
    events["compile"][1].set()
    assert events["later"][0].wait(5)
    events["later"][1].set()
    for thread in (step, compile_, later):
        thread.join(5)


def test_shared_work_runs_side_by_side_and_nested_holds_pass_through():
    gate = CompileGate()
    first, release = threading.Event(), threading.Event()
    holder = _holder(gate, False, first, release)
    assert first.wait(5)
    second = threading.Event()
    other = _holder(gate, False, second, release)
    assert second.wait(5)  # two devices' steps at once
    release.set()
    holder.join(5)
    other.join(5)
    with gate.exclusive(), gate.shared(), gate.exclusive():  # model code calling model code
        pass
    assert (gate._shared, gate._exclusive) == (0, False)


@pytest.mark.slow
def test_the_first_forward_of_each_compiled_shape_runs_alone(tiny_model_path, clip_path, tiny_params, tmp_path):
    """In an edit on compiled blocks, each batch shape's first transformer forward (where
    torch.compile compiles) holds the gate alone; every other forward shares it."""
    from engine.kernels.select import apply_speed
    from engine.pipeline.artifacts import Variant
    from engine.pipeline.edit import run_edit
    from engine.pipeline.model import load_model

    model = load_model(str(tiny_model_path), device="cpu", dtype="fp32")
    apply_speed(model, "default", compile_blocks=True)
    alone = []
    hook = model.pipeline.transformer.register_forward_pre_hook(lambda *_: alone.append(MODEL_GATE._exclusive))
    try:
        variants = [Variant("a", "a watercolor", 1), Variant("b", "a neon sign", 2)]
        run_edit(model, clip_path, variants, tiny_params(inject_fraction=0.5), tmp_path)
        first = len(alone)
        run_edit(model, clip_path, variants, tiny_params(inject_fraction=0.5), tmp_path / "again")
    finally:
        hook.remove()
    # inversion and round trip (1 row), the injected edit (7 rows), the edit without injection (4 rows)
    assert len(model.compiled_calls) == 3
    assert sum(alone[:first]) == 3 and alone[0]
    assert not any(alone[first:])  # the same shapes again: nothing to compile, nothing waits

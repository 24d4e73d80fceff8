"""src/kernel.py: the notebook client every course command and test uses, and its message wait."""
import asyncio
import time
from queue import Empty

import pytest
import zmq
import zmq.asyncio
from jupyter_client.session import Session

from src.kernel import SLICE, LevelTriggeredChannel, notebook_client


def pair():
    ctx = zmq.asyncio.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    b.connect(f"tcp://127.0.0.1:{a.bind_to_random_port('tcp://127.0.0.1')}")
    return ctx, a, b


def test_a_queued_message_is_returned_and_an_empty_queue_times_out():
    async def main():
        ctx, a, b = pair()
        session = Session()
        channel = LevelTriggeredChannel(b, session)
        for state in ("busy", "idle"):
            session.send(a, "status", {"execution_state": state})
        got = [(await channel.get_msg(timeout=5))["content"]["execution_state"] for _ in range(2)]
        t0 = time.perf_counter()
        with pytest.raises(Empty):
            await channel.get_msg(timeout=0.3)
        waited = time.perf_counter() - t0
        ctx.destroy(linger=0)
        return got, waited

    got, waited = asyncio.run(main())
    assert got == ["busy", "idle"], "both messages, in order"
    assert 0.25 <= waited < 0.3 + 2 * SLICE, f"the timeout is kept ({waited:.2f} s for 0.3 s)"


@pytest.mark.slow
def test_the_notebook_client_waits_on_the_level_triggered_channel(tmp_path):
    """A real kernel: the client the course builds runs a cell, and every message channel is the course's."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os; print(os.getcwd()); 6 * 7")])
    client = notebook_client(nb, tmp_path, timeout=120)
    with client.setup_kernel():
        channels = [client.kc.shell_channel, client.kc.iopub_channel, client.kc.control_channel]
        assert all(isinstance(c, LevelTriggeredChannel) for c in channels), [type(c) for c in channels]
        client.execute_cell(nb.cells[0], 0)
    outputs = nb.cells[0].outputs
    assert outputs[0]["text"].strip() == str(tmp_path), "the kernel starts in the folder given"
    assert outputs[1]["data"]["text/plain"] == "42"

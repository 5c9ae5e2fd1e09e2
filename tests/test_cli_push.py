"""``multimeter push``: its report on stdout, its errors on stderr, run as a user runs it."""

from __future__ import annotations

import pathlib

from tests._cli_results import multimeter_command
from tests.servers import free_port


def test_a_batch_set_aside_is_an_error_line_on_stderr_not_in_the_report(tmp_path):
    """stdout holds only what was delivered and left; the batch set aside is named on stderr."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "00000000000000000001-1-0.line").write_bytes(b"m x=1 1\n\xff\xfe\n")
    set_aside = spool / "unreadable" / "00000000000000000001-1-0"
    pushed = multimeter_command(
        "push",
        MULTIMETER_INFLUXDB_URL=f"http://127.0.0.1:{free_port()}",
        MULTIMETER_INFLUXDB_TOKEN="s3cret-token",
        MULTIMETER_SPOOL_DIR=str(spool),
    )
    assert 1 == pushed.returncode
    assert f"delivered 0 batch(es); 0 left in {spool}\n" == pushed.stdout
    assert (
        f"multimeter push: cannot be read, set aside: {set_aside}.line (reason: {set_aside}.reason)"
    ) == pushed.stderr.splitlines()[-1]
    assert pathlib.Path(f"{set_aside}.reason").read_text().strip()

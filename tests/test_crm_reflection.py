"""The CRM's tables are reflected on first use by whichever thread comes first: the
daemon's workers may all come at once (many notifications resolving their recipients)."""

from __future__ import annotations

import threading
from pathlib import Path

from crmflow.crm.database import CRM
from crmflow.crm.demo import create_demo_crm
from crmflow.rules.entities import builtin_model


def test_threads_reflecting_the_same_table_at_once_all_see_it_whole(tmp_path: Path) -> None:
    failures: list[str] = []
    for trial in range(10):
        url = f"sqlite:///{tmp_path / f'crm{trial}.db'}"
        create_demo_crm(url)
        crm = CRM(url, builtin_model())
        start = threading.Barrier(8)

        def recipients(crm: CRM = crm, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                assert crm.get("user", 3) is not None
                assert len(crm.find("user", {"role": "management"})) == 2
            except Exception as exc:  # a half-reflected table: AttributeError('id')
                failures.append(repr(exc))

        threads = [threading.Thread(target=recipients) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        crm.dispose()
    assert failures == []

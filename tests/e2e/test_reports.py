"""Reports through the running system: asked for over HTTP, built on the mailer's low lane,
mailed as a link, downloaded by an administrator."""

from __future__ import annotations

import csv
import io
import re
import uuid
import zipfile
from typing import Any

import httpx

from tests.e2e.bulk import (
    admin_client,
    caught,
    lane_in_queue_view,
    lane_wait_count,
    plain_text,
    scalar,
    seed_applicants,
)
from tests.support.system import RunningSystem
from tests.support.waiting import eventually

LINK = re.compile(r"https?://\S+/admin/reports/[0-9a-f-]{36}/download")


async def ask_for_report(admin: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await admin.post("/admin/reports", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == response.json()["statusUrl"]
    return str(response.json()["reportId"])


async def link_mailed(system: RunningSystem, report_id: str) -> str:
    """The download link of the report's mail, once it arrived."""

    def arrived() -> bool:
        return any(report_id in mail for mail in _report_bodies(system))

    await eventually(arrived, timeout=90, interval=0.5, what=f"the mail of report {report_id}")
    [body] = [mail for mail in _report_bodies(system) if report_id in mail]
    found = LINK.search(body)
    assert found is not None, body
    return found.group(0)


def _report_bodies(system: RunningSystem) -> list[str]:
    return [plain_text(file) for file, _ in caught(system.mail_dir, X_Email_Template="report")]


async def test_a_report_of_1000_applications_arrives_as_a_link_and_downloads_as_csv(
    system: RunningSystem,
) -> None:
    # Given 1,000 applications to one program (and the others of the session beside them)
    program = f"Report Studies {uuid.uuid4().hex[:6]}"
    await seed_applicants(system.database_url, 1000, program)
    async with admin_client(system.api) as admin:
        # When an administrator asks for the applications of that program
        report_id = await ask_for_report(
            admin, {"kind": "applications", "filters": {"program": program}}
        )
        # Then a link arrives by mail
        link = await link_mailed(system, report_id)
        assert link.startswith(system.api)

        # And the link downloads, for an administrator only, a CSV of exactly the program's rows
        async with httpx.AsyncClient(timeout=30) as anonymous:
            assert (await anonymous.get(link)).status_code == 401
        download = await admin.get(link)
        assert download.status_code == 200, download.text
        assert download.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(download.text)))
        in_database = await scalar(
            system.database_url, "SELECT count(*) FROM api.applications WHERE program = %s", program
        )
        assert len(rows) == in_database == 1000
        assert {row["program"] for row in rows} == {program}
        assert len({row["application_id"] for row in rows}) == 1000

        # And the low lane shows the work with the other lanes: in the queue view and in the
        # lane-wait metrics its SLA is read from
        low = await lane_in_queue_view(admin, "low")
        assert low["name"] == "mailer.low"
        assert await lane_wait_count(system, "low") >= 1

        # And its status says so
        status = (await admin.get(f"/admin/reports/{report_id}")).json()
        assert status["status"] == "done"
        assert status["rowsTotal"] == status["rowsWritten"] == 1000
        assert status["downloadUrl"] == link
        assert status["expiresAt"] is not None


async def test_a_report_in_xlsx_and_the_other_kinds(system: RunningSystem) -> None:
    program = f"Xlsx Studies {uuid.uuid4().hex[:6]}"
    await seed_applicants(system.database_url, 50, program, status="verification_failed")
    async with admin_client(system.api) as admin:
        # When the applications come as XLSX, and the payments and dead letters as CSV
        xlsx = await ask_for_report(
            admin,
            {"kind": "applications", "format": "xlsx", "filters": {"program": program}},
        )
        payments = await ask_for_report(admin, {"kind": "payments"})
        dead = await ask_for_report(admin, {"kind": "dead_letters"})

        # Then the workbook holds a header and the 50 rows
        sheet = (await admin.get(await link_mailed(system, xlsx))).content
        with zipfile.ZipFile(io.BytesIO(sheet)) as workbook:
            xml = workbook.read("xl/worksheets/sheet1.xml").decode()
        assert xml.count("<row ") == 51
        # And the others answer their header at least (what they hold depends on the session)
        for report_id, first_column in ((payments, "application_id"), (dead, "service")):
            text = (await admin.get(await link_mailed(system, report_id))).text
            assert text.split(",", 1)[0] == first_column, text[:200]


async def test_a_report_request_is_checked_and_admins_only(system: RunningSystem) -> None:
    async with admin_client(system.api) as admin:
        refused = await admin.post("/admin/reports", json={"kind": "everything"})
        assert refused.status_code == 422
        missing = await admin.get(f"/admin/reports/{uuid.uuid4()}")
        assert missing.status_code == 404
    async with httpx.AsyncClient(base_url=system.api, timeout=30) as anonymous:
        assert (
            await anonymous.post("/admin/reports", json={"kind": "payments"})
        ).status_code == 401

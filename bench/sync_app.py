"""The "before" design, for the before/after scenario: everything inside the request.

As the classic portal did it: the request checks the documents, calls the payment provider
and sends the confirmation mail before it answers. It reuses the verifier's real checks
(``services.verifier.document_rules``), and simulates the slow parts with the same figures the
async system is given (``VERIFY_SIMULATED_MS``, ``PAYMENT_SIMULATED_MS``, ``SMTP_SIMULATED_MS``).
A synchronous endpoint runs in the server's thread pool (40 threads, Starlette's default),
so each request holds a thread for the whole slow path: that is the design being measured.
It skips the database write, which only flatters it.

    python -m bench.sync_app --port 8300
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
import uuid
from typing import Annotated

import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, UploadFile

from services.verifier.document_rules import Limits, check_document


def create_app(verify_seconds: float, provider_seconds: float, smtp_seconds: float) -> FastAPI:
    app = FastAPI(title="Synchronous baseline (the before design)")

    @app.post("/applications", status_code=202)
    def submit(
        personal_statement: Annotated[str, Form()],
        program: Annotated[str, Form()],
        files: Annotated[list[UploadFile], File()],
    ) -> dict[str, str]:
        for upload in files:
            data = upload.file.read()
            verdict = check_document(
                data,
                upload.content_type or "",
                hashlib.sha256(data).hexdigest(),
                len(data),
                Limits(),
            )
            if not verdict.ok:
                raise HTTPException(422, verdict.reason)
        time.sleep(verify_seconds)  # the document checks of the classic design
        time.sleep(provider_seconds)  # creating the checkout with the provider
        time.sleep(smtp_seconds)  # sending the confirmation mail
        return {"applicationId": str(uuid.uuid4()), "status": "completed-in-request"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8300)
    args = parser.parse_args()
    app = create_app(
        int(os.environ.get("VERIFY_SIMULATED_MS", "300")) / 1000,
        int(os.environ.get("PAYMENT_SIMULATED_MS", "200")) / 1000,
        int(os.environ.get("SMTP_SIMULATED_MS", "100")) / 1000,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

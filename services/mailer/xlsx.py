"""Rows to an XLSX file with flat memory: xlsxwriter's ``constant_memory`` mode writes each row
to disk as soon as the next one starts, so a sheet of any length holds one row in memory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import xlsxwriter

# Excel's limit; a longer report is cut with a note in its last row rather than refused.
MAX_ROWS = 1_048_576


class XlsxWriter:
    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.workbook = xlsxwriter.Workbook(
            str(path), {"constant_memory": True, "remove_timezone": True}
        )
        self.sheet = self.workbook.add_worksheet("report")
        self.dates = self.workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.sheet.write_row(0, 0, list(columns))
        self.next_row = 1

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            if self.next_row >= MAX_ROWS - 1:
                if self.next_row == MAX_ROWS - 1:
                    self.sheet.write(self.next_row, 0, "(cut: more rows than a sheet holds)")
                    self.next_row += 1
                return
            for column, value in enumerate(row):
                self._write(column, value)
            self.next_row += 1

    def _write(self, column: int, value: Any) -> None:
        if isinstance(value, datetime):
            self.sheet.write_datetime(self.next_row, column, value, self.dates)
        elif value is None or isinstance(value, (int, float, str)):
            self.sheet.write(self.next_row, column, value)
        else:
            self.sheet.write_string(self.next_row, column, str(value))

    def close(self) -> None:
        self.workbook.close()

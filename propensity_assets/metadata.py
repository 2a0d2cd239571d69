"""Asset metadata the UI shows: row counts, time ranges, sample rows, plots."""

import base64

import dagster as dg
import pandas as pd


def sample_rows(frame: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    head = frame.head(rows).astype(str)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in head.itertuples(index=False)]
    return dg.MetadataValue.md("\n".join(lines))


def time_range(start, end) -> dict[str, dg.MetadataValue]:
    return {
        "time_range_start": dg.MetadataValue.text(str(start)),
        "time_range_end": dg.MetadataValue.text(str(end)),
    }


def png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG plot inline in the UI's metadata (markdown with a data URL)."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")

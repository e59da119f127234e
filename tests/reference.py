"""A plain pandas implementation of the sessionization rules, used only to cross-check Spark."""

from __future__ import annotations

import pandas as pd


def reference_sessions(clicks: pd.DataFrame, gap_minutes: float = 30, max_items: int = 10) -> set[tuple]:
    """clicks: columns site, user_id, ts (datetime64), product_id → {(site, user_id, start_ts, products)}."""
    df = clicks.sort_values(["site", "user_id", "ts", "product_id"], kind="mergesort").reset_index(drop=True)
    same_user = (df["site"] == df["site"].shift()) & (df["user_id"] == df["user_id"].shift())
    gap = (df["ts"] - df["ts"].shift()).dt.total_seconds()
    df["session"] = (~same_user | (gap > gap_minutes * 60)).cumsum()
    out = set()
    for _, g in df.groupby("session", sort=False):
        products = tuple(dict.fromkeys(g["product_id"]))[:max_items]
        out.add((g["site"].iat[0], g["user_id"].iat[0], g["ts"].iat[0].to_pydatetime(), products))
    return out


def reference_pair_count(sessions: set[tuple]) -> int:
    return sum(len(p) * (len(p) - 1) // 2 for *_, p in sessions)

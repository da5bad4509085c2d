"""Write data/churn.csv: a synthetic customer-churn table with this team's own columns.

Stands in for a team's export (``python make_data.py``; the committed file came from it). A few rows
are broken on purpose (a missing value, a word in a number column, a repeated customer) to show
what the platform's preparer quarantines.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

CONTRACTS = ("monthly", "annual", "two-year")
COLUMNS = ("tenure_months", "monthly_charges", "support_calls", "contract", "churned")


def customer(rng: random.Random) -> list[object]:
    contract = rng.choices(CONTRACTS, weights=(5, 3, 2))[0]
    tenure = rng.randint(1, 72)
    charges = round(rng.uniform(20, 120), 2)
    calls = min(9, int(rng.expovariate(0.7)))
    score = 1.2 - 0.05 * tenure + 0.02 * (charges - 70) + 0.45 * calls - 1.5 * CONTRACTS.index(contract)
    churned = "yes" if rng.random() < 1 / (1 + math.exp(-2.5 * score)) else "no"
    return [tenure, charges, calls, contract, churned]


def main(rows: int = 2000, seed: int = 11) -> None:
    rng = random.Random(seed)
    table = [customer(rng) for _ in range(rows)]
    table[17][1] = ""  # a missing value
    table[42][2] = "many"  # a word in a number column
    table.append(list(table[5]))  # the same customer twice
    path = Path(__file__).with_name("data") / "churn.csv"
    path.parent.mkdir(exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(table)


if __name__ == "__main__":
    main()

"""Every write to wallets, holds and the ledger, one concept per module: `ledger` (wallets, posting
entries), `holds` (taking, settling and releasing a job's hold), `topups` (Stripe top-ups, refunds and
disputes), `grants` (the starter grant, the daily bonus) and `adjustments` (operators' corrections).
Ledger rows are written by these modules and nowhere else (a job's opening statement, in
inference.services.opening, writes its hold's entry as `holds` does)."""

"""The matching worker: the single writer of orders, trades, balances and the ledger."""

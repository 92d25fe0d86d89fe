"""wallet: accounts, a double-entry ledger, donations as orchestrated sagas (docs/wallet.md)."""

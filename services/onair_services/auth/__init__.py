"""The auth service: users, passwords, login sessions and the signing keys of access tokens.

See docs/auth-service.md; the token formats are in docs/contracts.md and the shared token code
(verification, identities, revocation) in :mod:`onair.auth`.
"""

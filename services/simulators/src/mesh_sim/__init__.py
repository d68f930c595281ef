"""Simulators of the systems around the contract mesh, for the demo and for tests.

- `mesh-sim erp`: ERP/AP. Receives milestone release commands and AP verdict webhooks, records them;
  posts invoices and performance events (milestone completions, SLA measurements) on command.
- `mesh-sim crm`: a Salesforce-shaped CRM. OAuth2 client-credentials token, Opportunity upsert by an
  external id, and signed decisions sent back to renewal-sync.
- `mesh-sim smtp`: an SMTP catcher (aiosmtpd) with the caught messages readable over HTTP.
"""

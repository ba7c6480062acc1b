"""Webhook adapters: one pure module per provider (SendGrid, Mailchimp, HubSpot).

Each turns a provider's signed request (:class:`.base.HookRequest`) into events in
the catalogue's format; :mod:`.base` holds the types they share, and
:mod:`.hubspot_crm` the one piece of I/O (HubSpot's webhooks name a deal, the CRM's
API gives it).
"""

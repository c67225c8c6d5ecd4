"""The e-mail channel adapter: customers' mail in over SMTP or a provider webhook, agents' replies out by SMTP.

Inside this package the stdlib `email` module is always imported absolutely (`from email import ...`); no module
here is named like a stdlib module, so nothing shadows it.
"""

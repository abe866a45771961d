"""What the tenants app tells apps above it without knowing them."""

from django.dispatch import Signal

#: A tenant proved it can be read (verified), from `sources` (capability keys);
#: `again` when it was not verified before (new, or back from revoked or failing).
#: Sent inside the verification's transaction. The sync app starts syncing them.
tenant_verified = Signal()

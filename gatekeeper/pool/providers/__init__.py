"""One module per provider: ``local``, ``static`` (``openstack`` comes with the pool issue)."""

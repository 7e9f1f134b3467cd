"""One module per provider: ``local``, ``static``, ``openstack``."""

from __future__ import annotations

from gatekeeper.config.site import ProviderConfig
from gatekeeper.errors import ProviderError
from gatekeeper.pool.providers.base import Provider


def make_provider(config: ProviderConfig, pool_name: str = "gatekeeper") -> Provider:
    """The provider for ``config.driver``; ``pool_name`` tags what it makes.

    :raises ProviderError: an unknown driver, or the provider cannot start.
    """
    if config.driver == "local":
        from gatekeeper.pool.providers.local import LocalProvider

        return LocalProvider(config)
    if config.driver == "static":
        from gatekeeper.pool.providers.static import StaticProvider

        return StaticProvider(config)
    if config.driver == "openstack":
        from gatekeeper.pool.providers.openstack import OpenStackProvider

        return OpenStackProvider(config, pool_name)
    raise ProviderError(f"provider {config.name}: unknown driver {config.driver!r}")

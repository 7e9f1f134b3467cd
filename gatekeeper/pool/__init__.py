"""The node pool: node lifecycle, allocation across providers, holds and reaping."""

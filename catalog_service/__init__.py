"""Product catalog: schema, synthetic generator, parquet/Amazebay loaders and search.

The data layer (this package minus its Ray actor module) imports without Ray or torch::

    from ecomrlve.catalog_service import Catalog
    catalog = Catalog.synthetic(n_products=10_000, seed=0)
"""

from ecomrlve.catalog_service.catalog import SCHEMA_VERSION, Catalog
from ecomrlve.catalog_service.schema import PRODUCT_SCHEMA

__all__ = ["Catalog", "PRODUCT_SCHEMA", "SCHEMA_VERSION"]

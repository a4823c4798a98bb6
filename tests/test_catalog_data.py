"""Catalog data layer: taxonomy, synthetic generator, Catalog, save/load, Amazebay loader."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ecomrlve.catalog_service import Catalog
from ecomrlve.catalog_service.schema import PRODUCT_SCHEMA, normalize_table
from ecomrlve.catalog_service.loaders import LoadReport, parse_price, stock_and_ship_days
from ecomrlve.catalog_service.synthetic import generate_products, id_width
from ecomrlve.catalog_service.taxonomy import DEPARTMENTS, LEAVES, PROJECTS, leaf_by_name, validate_taxonomy
from ecomrlve.envs.catalog import (
    ATTRIBUTE_COLUMNS,
    CATEGORICAL_COLUMNS,
    PRODUCT_COLUMNS,
    CatalogLike,
    SearchFilters,
    SearchHits,
)


@pytest.fixture(scope="module")
def small() -> Catalog:
    return Catalog.synthetic(n_products=10_000, seed=0)


@pytest.fixture(scope="module")
def big_table() -> pa.Table:
    return generate_products(50_000, seed=3)


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# --------------------------------------------------------------------------- taxonomy


def test_taxonomy_is_valid_and_covers_departments_and_projects():
    validate_taxonomy()
    assert len(LEAVES) >= 80
    assert {leaf.l1 for leaf in LEAVES} == set(DEPARTMENTS)
    assert len(DEPARTMENTS) == 9
    assert set(PROJECTS) == {"home office", "camping", "baking", "painting", "fitness", "nursery"}
    names = {leaf.l3 for leaf in LEAVES}
    for project, leaves in PROJECTS.items():
        assert len(set(leaves)) >= 12, project
        assert set(leaves) <= names, project
    charger = leaf_by_name("Wall Chargers")
    assert charger.path == "Electronics > Power & Charging > Wall Chargers"
    assert "USB-C" in charger.attribute_values("connector_type")
    assert charger.attribute_values("flavor") is None
    assert set(leaf_by_name("Charging Cables").attribute_values("connector_type")) == {
        "USB-C", "Lightning", "Micro-USB", "USB-A"
    }
    with pytest.raises(KeyError):
        leaf_by_name("Spaceships")


# --------------------------------------------------------------------------- generator


def test_generation_is_deterministic():
    a = generate_products(3_000, seed=11)
    b = generate_products(3_000, seed=11)
    c = generate_products(3_000, seed=12)
    assert _ipc_bytes(a) == _ipc_bytes(b)
    assert _ipc_bytes(a) != _ipc_bytes(c)
    assert a.column("title").to_pylist() != c.column("title").to_pylist()


def test_schema_ids_and_dtypes(small):
    table = small.table
    assert table.schema.equals(PRODUCT_SCHEMA)
    assert table.column_names == list(PRODUCT_COLUMNS)
    assert pa.types.is_dictionary(table.schema.field("brand").type)
    assert table.schema.field("price").type == pa.float64()
    assert table.schema.field("rating").type == pa.float32()
    assert table.schema.field("rating_count").type == pa.int32()
    assert table.schema.field("ship_days").type == pa.int16()
    assert table.schema.field("stock").type == pa.int32()
    assert table.schema.field("features").type == pa.list_(pa.string())
    ids = table.column("product_id")
    assert ids[0].as_py() == "p0000000" and ids[9_999].as_py() == "p0009999"
    assert id_width(10_000_000) == 7 and id_width(10_000_001) == 8
    assert generate_products(0, 0).num_rows == 0
    for name in ("product_id", "title", "description", "category_l3", "brand", "store", "price"):
        assert table.column(name).null_count == 0, name


def test_attributes_null_exactly_where_leaf_lacks_them(small):
    l3_codes, l3_values = small.codes("category_l3")
    for name in ATTRIBUTE_COLUMNS:
        codes, values = small.codes(name)
        has = np.array([leaf_by_name(v).attribute_values(name) is not None for v in l3_values])
        np.testing.assert_array_equal(codes >= 0, has[l3_codes], err_msg=name)
        # every value used comes from that leaf's pool
        for code in np.unique(l3_codes)[:40]:
            rows = small.category_rows(l3_values[code])
            pool = leaf_by_name(l3_values[code]).attribute_values(name) or ()
            used = {values[c] for c in np.unique(codes[rows]) if c >= 0}
            assert used <= set(pool), (name, l3_values[code])


def test_leaf_and_department_coverage(small):
    counts = small.category_counts()
    assert len(counts) >= 40
    l1_codes, l1_values = small.codes("category_l1")
    assert {l1_values[c] for c in np.unique(l1_codes)} == set(DEPARTMENTS)
    # popularity is uneven
    sizes = np.array(sorted(counts.values()))
    assert sizes[-1] >= 4 * sizes[0]


def test_numeric_distributions(small):
    price = small.numeric("price")
    assert price.min() >= 0.99
    np.testing.assert_array_equal(np.round(price * 100) / 100, price)
    codes, values = small.codes("category_l3")
    checked = 0
    for code, name in enumerate(values):
        rows = codes == code
        if rows.sum() < 40:
            continue
        median = float(np.median(price[rows]))
        target = leaf_by_name(name).price_median
        assert target / 2.5 <= median <= target * 2.5, (name, median, target)
        checked += 1
    assert checked >= 40
    rating = small.numeric("rating")
    assert rating.min() >= 1.0 and rating.max() <= 5.0
    np.testing.assert_allclose(np.round(rating.astype(np.float64), 1), rating, atol=1e-6)
    assert 3.8 <= float(np.mean(rating)) <= 4.6
    count = small.numeric("rating_count")
    assert count.min() >= 1 and count.max() > 50 * np.median(count)
    ship = small.numeric("ship_days")
    assert ship.min() >= 1 and ship.max() <= 14
    assert np.mean(ship <= 5) >= 0.75
    stock = small.numeric("stock")
    assert stock.min() >= 0 and stock.max() <= 500


def test_fifty_thousand_products(big_table):
    stock = big_table.column("stock").to_numpy()
    assert 0.04 <= np.mean(stock == 0) <= 0.10
    titles = big_table.column("title")
    assert pc.count_distinct(titles).as_py() / len(titles) >= 0.999
    assert not pc.any(pc.match_substring_regex(titles, r"[{}]")).as_py()
    assert not pc.any(pc.match_substring_regex(big_table.column("description"), r"[{}]")).as_py()
    lengths = pc.list_value_length(big_table.column("features")).to_numpy()
    assert lengths.min() >= 2 and lengths.max() <= 4


def test_titles_read_like_products(small):
    row = int(small.category_rows("Wall Chargers")[0])
    p = small.product(row)
    title = p["title"]
    assert title.startswith(p["brand"] + " ")
    assert f"{p['wattage']} {p['connector_type']} Wall Charger " in title
    assert title.endswith(", " + p["color"])
    assert p["brand"] in p["description"]


# --------------------------------------------------------------------------- Catalog


def test_catalog_protocol_and_lookups(small):
    assert isinstance(small, CatalogLike)
    assert len(small) == 10_000
    for row in (0, 1, 4_321, 9_999):
        pid = small.product_id(row)
        assert pid == f"p{row:07d}"
        assert small.row_of(pid) == row
    for bad in ("p0010000", "p9999999", "p000001", "p00000001", "x", "", "P0000001", "p00000a1", None, 12):
        assert small.row_of(bad) is None, bad
    with pytest.raises(IndexError):
        small.product_id(10_000)
    with pytest.raises(IndexError):
        small.value("price", -1)
    with pytest.raises(KeyError):
        small.numeric("title")
    with pytest.raises(KeyError):
        small.codes("price")


def test_numeric_is_cached_readonly_and_zero_copy(small):
    price = small.numeric("price")
    assert price is small.numeric("price")
    assert price.dtype == np.float64 and not price.flags.writeable
    with pytest.raises(ValueError):
        price[0] = 1.0
    assert small.numeric("ship_days").dtype == np.int16
    assert small.value("price", 5) == float(price[5])
    assert isinstance(small.value("stock", 5), int)


def test_codes_with_nulls(small):
    codes, values = small.codes("color")
    assert codes.dtype == np.int32 and not codes.flags.writeable
    assert (codes == -1).any() and (codes >= 0).any()
    assert codes is small.codes("color")[0]
    null_row = int(np.flatnonzero(codes == -1)[0])
    set_row = int(np.flatnonzero(codes >= 0)[0])
    assert small.value("color", null_row) is None
    assert small.value("color", set_row) == values[codes[set_row]]
    assert small.table.column("color")[set_row].as_py() == values[codes[set_row]]


def test_category_rows_and_path(small):
    codes, values = small.codes("category_l3")
    for name in ("Wall Chargers", "Tents", "Yoga Mats"):
        rows = small.category_rows(name)
        expected = np.flatnonzero(codes == values.index(name))
        np.testing.assert_array_equal(rows, expected)
        assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0)
    assert small.category_rows("Spaceships").size == 0
    row = int(small.category_rows("Tents")[0])
    assert small.category_path(row) == "Sports & Outdoors > Camping & Hiking > Tents"
    assert sum(small.category_counts().values()) == len(small)


def test_product_is_json_serialisable(small):
    p = small.product(7)
    assert list(p) == list(PRODUCT_COLUMNS)
    assert json.loads(json.dumps(p)) == p
    assert isinstance(p["features"], list) and isinstance(p["rating"], float)
    assert p["rating"] == round(p["rating"], 1)


def test_from_table_validation(small):
    table = small.table.slice(0, 100)
    with pytest.raises(ValueError, match="missing column 'ship_days'"):
        Catalog.from_table(table.drop_columns(["ship_days"]))
    bad_price = table.set_column(
        table.column_names.index("price"), "price", pc.cast(table.column("price"), pa.string())
    )
    with pytest.raises(ValueError, match="'price'"):
        Catalog.from_table(bad_price)
    dup = pa.concat_tables([table.slice(0, 2), table.slice(0, 1)])
    with pytest.raises(ValueError, match="duplicate"):
        Catalog.from_table(dup)
    with pytest.raises(ValueError, match="'stock'"):
        Catalog.from_table(table.set_column(
            table.column_names.index("stock"), "stock", pa.array([None] * 100, pa.int32())
        ))
    # plain strings for categoricals, int64 numbers: accepted and normalised
    plain = table
    for name in CATEGORICAL_COLUMNS:
        i = plain.column_names.index(name)
        plain = plain.set_column(i, name, plain.column(name).cast(pa.string()))
    i = plain.column_names.index("stock")
    plain = plain.set_column(i, "stock", plain.column("stock").cast(pa.int64()))
    cat = Catalog.from_table(plain.append_column("extra", pa.array(range(100))))
    assert cat.table.schema.equals(PRODUCT_SCHEMA)
    assert cat.product(3) == small.product(3)


def test_non_sequential_ids_use_a_dict(small):
    table = small.table.take(pa.array([5, 2, 9, 0]))
    cat = Catalog.from_table(table)
    assert [cat.row_of(f"p{r:07d}") for r in (5, 2, 9, 0)] == [0, 1, 2, 3]
    assert cat.row_of("p0000001") is None
    sliced = Catalog.from_table(small.table.slice(0, 50))
    assert sliced.row_of("p0000049") == 49 and sliced.row_of("p0000050") is None


def test_text_cells_equal_arrow_values_however_the_column_is_stored(small, tmp_path):
    """Text cells are sliced from the column's UTF-8 buffer when it is one chunk without
    nulls; sliced (offset) arrays, several chunks, nulls and non-sequential ids read the same."""
    rows = (0, 1, 17, 4_999, 9_999)
    loaded = Catalog.load(small.save(tmp_path / "cat"))
    for cat in (small, loaded):
        for r in rows:
            assert cat.product_id(r) == cat.value("product_id", r) == f"p{r:07d}"
            for name in ("title", "description"):
                assert cat.value(name, r) == small.table.column(name)[r].as_py()
    chunked = Catalog.from_table(pa.concat_tables([small.table.slice(0, 6), small.table.slice(6, 14)]))
    offset = Catalog.from_table(small.table.slice(3, 12))
    shuffled = Catalog.from_table(small.table.take(pa.array([9, 4, 1, 7])))
    descriptions = small.table.column("description").combine_chunks()
    with_nulls = Catalog.from_table(small.table.slice(0, 20).set_column(
        small.table.schema.get_field_index("description"), "description",
        pa.array([None if i % 3 == 0 else d for i, d in enumerate(descriptions[:20].to_pylist())], pa.string())))
    for cat, source in ((chunked, range(20)), (offset, range(3, 15)), (shuffled, (9, 4, 1, 7)), (with_nulls, range(20))):
        for r, s in enumerate(source):
            expected = small.table.column("description")[s].as_py() if cat is not with_nulls or s % 3 else None
            assert (cat.product_id(r), cat.value("title", r), cat.value("description", r)) == \
                (f"p{s:07d}", small.table.column("title")[s].as_py(), expected)


def test_save_load_round_trip(small, tmp_path):
    small.save(tmp_path / "cat")
    manifest = json.loads((tmp_path / "cat" / "manifest.json").read_text())
    assert manifest["n_products"] == 10_000 and manifest["seed"] == 0
    assert manifest["source"] == "synthetic" and manifest["schema_version"] == 1
    loaded = Catalog.load(tmp_path / "cat")
    assert loaded.table.equals(small.table)
    assert len(loaded) == len(small) and loaded.seed == 0
    assert loaded.product(1234) == small.product(1234)
    assert loaded.row_of("p0001234") == 1234
    np.testing.assert_array_equal(loaded.codes("size")[0], small.codes("size")[0])
    np.testing.assert_array_equal(loaded.category_rows("Tents"), small.category_rows("Tents"))
    with pytest.raises(FileNotFoundError):
        Catalog.load(tmp_path / "nothing")


def test_pickle_round_trip(small):
    import pickle

    small.codes("color")
    clone = pickle.loads(pickle.dumps(small))
    assert clone.table.equals(small.table) and clone.seed == 0
    assert clone.product(42) == small.product(42) and clone.row_of("p0000042") == 42


def test_from_parquet(small, tmp_path):
    path = tmp_path / "products.parquet"
    pq.write_table(small.table.slice(0, 500), path, row_group_size=128)
    cat = Catalog.from_parquet(path)
    assert len(cat) == 500
    assert [cat.product(r) for r in (0, 130, 499)] == [small.product(r) for r in (0, 130, 499)]


class _FakeSearcher:
    def __init__(self):
        self.calls = []

    def search(self, query, filters, top_k):
        self.calls.append((query, filters, top_k))
        return SearchHits(rows=np.arange(top_k, dtype=np.int64), scores=np.ones(top_k, np.float32))


def test_search_delegates_and_coerces_filters(small):
    cat = Catalog.from_table(small.table.slice(0, 20))
    fake = _FakeSearcher()
    cat.set_searcher(fake)
    hits = cat.search("usb-c charger", {"price_max": 25, "attributes": {"color": "Black"}}, top_k=3)
    assert list(hits.rows) == [0, 1, 2]
    query, filters, top_k = fake.calls[-1]
    assert isinstance(filters, SearchFilters) and filters.price_max == 25 and top_k == 3
    cat.search("tent")
    assert fake.calls[-1][1] is None and fake.calls[-1][2] == 10
    with pytest.raises(ValueError):
        cat.search("tent", {"price_maximum": 3})
    with pytest.raises(TypeError):
        cat.search("tent", ["price_max"])


# --------------------------------------------------------------------------- Amazebay


def _amazebay_rows() -> list[dict]:
    good_details = json.dumps({"Brand": "Anker", "Color": "Black", "Wattage": "65W",
                               "Connector Type": "USB-C", "Item Weight": "4 ounces"})
    return [
        dict(parent_asin="B001", title="Anker Nano 65W Charger", main_category="All Electronics",
             categories=["Electronics", "Power & Charging", "Wall Chargers", "USB-C"], price="$1,299.00",
             average_rating=4.6, rating_number=1200, features=["GaN", " Foldable plug "],
             description=["Fast charger.", "Compact."], store="Anker Store", details=good_details),
        dict(parent_asin="B002", title="No price", price=None, details="{}"),
        dict(parent_asin="B003", title="Price None", price="None"),
        dict(parent_asin="B004", title="Belkin Cable", main_category="All Electronics", categories=[],
             price="$19.99", average_rating=4.0, rating_number=10, store="Belkin", details="{not json"),
        dict(parent_asin="B001", title="Duplicate", price="$5.00", average_rating=3.0, rating_number=1),
        dict(parent_asin="B005", title="  ", price="$5.00"),
        dict(parent_asin=None, title="No id", price="$5.00"),
        dict(parent_asin="B006", title="Cotton Tee", categories=["Clothing"], price="$10.99 - $24.99",
             average_rating=4.1, rating_number=7, description="Soft tee",
             details=json.dumps({"colour": "Red", "SIZE": "XL", "Material Type": "Cotton"})),
        dict(parent_asin="B007", title="Bad price", price="abc"),
        dict(parent_asin="B008", title="Free", price="$0.00"),
        dict(parent_asin="B009", title="KIND Bar", price="$12.50", average_rating=None, rating_number=None,
             features=None, store="KIND Snacks", details=json.dumps({"Brand": "", "Flavor": "Vanilla"})),
        dict(parent_asin="B010", title="Widget", categories=["Home & Kitchen", "Gadgets"], price="12",
             average_rating=5.0, rating_number=2, details="[1, 2]"),
    ]


AMAZEBAY_SCHEMA = pa.schema([
    ("parent_asin", pa.string()), ("title", pa.string()), ("main_category", pa.string()),
    ("categories", pa.list_(pa.string())), ("price", pa.string()), ("average_rating", pa.float64()),
    ("rating_number", pa.int64()), ("features", pa.list_(pa.string())), ("description", pa.list_(pa.string())),
    ("store", pa.string()), ("details", pa.string()),
])


def _write_amazebay(path, rows, description_as_string=False):
    schema = AMAZEBAY_SCHEMA
    if description_as_string:
        schema = schema.set(schema.get_field_index("description"), pa.field("description", pa.string()))
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    if not description_as_string:
        columns["description"] = [[d] if isinstance(d, str) else d for d in columns["description"]]
    pq.write_table(pa.table(columns, schema=schema), path)


def test_amazebay_loader_maps_and_reports(tmp_path):
    path = tmp_path / "amazebay.parquet"
    _write_amazebay(path, _amazebay_rows())
    cat = Catalog.from_amazebay(path, batch_size=4)
    report = cat.load_report
    assert isinstance(report, LoadReport)
    assert report.rows_read == 12 and report.rows_kept == 5 and report.rows_skipped == 7
    assert report.skipped == {
        "missing_price": 2, "duplicate_id": 1, "missing_title": 1, "missing_id": 1,
        "bad_price": 1, "non_positive_price": 1,
    }
    assert report.warnings == {"bad_details_json": 2, "price_range": 1, "missing_rating": 1, "missing_category": 1}
    assert [cat.product_id(r) for r in range(len(cat))] == ["B001", "B004", "B006", "B009", "B010"]
    assert cat.row_of("B006") == 2 and cat.row_of("B002") is None

    p = cat.product(cat.row_of("B001"))
    assert p["title"] == "Anker Nano 65W Charger"
    assert p["price"] == 1299.0
    assert cat.category_path(0) == "Electronics > Power & Charging > Wall Chargers"
    assert (p["brand"], p["store"]) == ("Anker", "Anker Store")
    assert (p["color"], p["wattage"], p["connector_type"]) == ("Black", "65W", "USB-C")
    assert p["size"] is None and p["flavor"] is None
    assert p["rating"] == 4.6 and p["rating_count"] == 1200
    assert p["features"] == ["GaN", "Foldable plug"]
    assert p["description"] == "Fast charger. Compact."

    p = cat.product(cat.row_of("B004"))  # bad JSON: no attributes, brand from store
    assert cat.category_path(1) == "All Electronics > All Electronics > All Electronics"
    assert (p["brand"], p["price"], p["color"]) == ("Belkin", 19.99, None)

    p = cat.product(cat.row_of("B006"))
    assert cat.category_path(2) == "Clothing > Clothing > Clothing"
    assert (p["price"], p["color"], p["size"], p["material"]) == (10.99, "Red", "XL", "Cotton")
    assert p["brand"] is None and p["description"] == "Soft tee"

    p = cat.product(cat.row_of("B009"))
    assert cat.category_path(3) == "Uncategorized > Uncategorized > Uncategorized"
    assert (p["rating"], p["rating_count"], p["features"]) == (0.0, 0, [])
    assert (p["brand"], p["flavor"], p["price"]) == ("KIND Snacks", "Vanilla", 12.5)

    assert cat.category_path(4) == "Home & Kitchen > Gadgets > Gadgets"
    assert cat.value("price", 4) == 12.0

    stock, ship = stock_and_ship_days(["B001", "B004", "B006", "B009", "B010"])
    np.testing.assert_array_equal(cat.numeric("stock"), stock)
    np.testing.assert_array_equal(cat.numeric("ship_days"), ship)
    assert cat.table.schema.equals(PRODUCT_SCHEMA)
    # same file, one batch: same table
    assert Catalog.from_amazebay(path).table.equals(cat.table)


def test_amazebay_description_string_and_missing_column(tmp_path):
    rows = [dict(parent_asin="A1", title="Lamp", price="$30", description="Bright lamp.", details=None)]
    path = tmp_path / "desc.parquet"
    _write_amazebay(path, rows, description_as_string=True)
    cat = Catalog.from_amazebay(path)
    assert cat.value("description", 0) == "Bright lamp."
    assert cat.load_report.rows_skipped == 0
    pq.write_table(pa.table({"parent_asin": ["A"], "title": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="'price'"):
        Catalog.from_amazebay(tmp_path / "bad.parquet")


def test_price_parsing_and_derived_stock():
    assert parse_price("$1,299.00") == (1299.0, None, False)
    assert parse_price(" $5 - $9.50 ") == (5.0, None, True)
    assert parse_price("") == (None, "missing_price", False)
    assert parse_price("$-3") == (None, "bad_price", False)
    assert parse_price(0.0) == (None, "non_positive_price", False)
    assert parse_price(12.5) == (12.5, None, False)
    assert parse_price("1,299") == (1299.0, None, False)
    assert parse_price("$1,29") == (None, "bad_price", False)
    assert parse_price(float("nan")) == (None, "missing_price", False)
    ids = [f"X{i:06d}" for i in range(20_000)]
    stock, ship = stock_and_ship_days(ids)
    assert 0.06 <= np.mean(stock == 0) <= 0.08
    assert stock.max() <= 500 and ship.min() >= 1 and ship.max() <= 14
    again, _ = stock_and_ship_days(ids[:10])
    np.testing.assert_array_equal(again, stock[:10])


def test_normalize_table_rejects_non_tables():
    with pytest.raises(TypeError):
        normalize_table({"product_id": ["a"]})

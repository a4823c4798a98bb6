"""The shop tools (docs/architecture.md, "Tools"): small typed functions over the episode's `World`.

Each tool is one pydantic argument model plus one function `fn(ctx, args) -> dict`. The
OpenAI function schema is generated from the argument model, never written twice. A tool
that runs but refuses (unknown id, out of stock, window expired) returns
`{"error": "..."}`: a normal observation. Schema violations are the caller's job
(`validate_call`), and make the action invalid.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .actions import InvalidAction, describe_validation_error
from .catalog import CATEGORY_SEP, SearchFilters
from .difficulty import Axes
from .policy_kb import rank_rules
from .rng import EpisodeRandom
from .world import RETURN_METHODS, RETURN_REASONS, CartLine, Order, OrderLine, ReturnRecord, World

MAX_QUANTITY = 99
SEARCH_FIELDS_SHOWN = ("brand", "price", "rating", "rating_count", "ship_days")


@dataclass
class ToolContext:
    world: World
    axes: Axes
    rand: EpisodeRandom
    turn: int


class Args(BaseModel):
    """Every tool's arguments: unknown keys rejected, every number bounded and finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------- argument models

class CatalogSearchArgs(Args):
    query: str = Field(max_length=500, description="Free-text search query.")
    filters: SearchFilters | None = Field(None, description="Structured filters, all must hold.")
    top_k: int = Field(10, ge=1, le=200, description="Number of results wanted (capped by the store).")


class ProductIdArgs(Args):
    product_id: str = Field(min_length=1, max_length=64)


class CartAddArgs(Args):
    product_id: str = Field(min_length=1, max_length=64)
    variant_id: str | None = Field(None, max_length=80, description="Required when the product has variants.")
    quantity: int = Field(1, ge=1, le=MAX_QUANTITY)


class LineIdArgs(Args):
    line_id: str = Field(min_length=1, max_length=64)


class CartSetQuantityArgs(Args):
    line_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=0, le=MAX_QUANTITY, description="0 removes the line.")


class NoArgs(Args):
    pass


class AskUserArgs(Args):
    question: str = Field(min_length=1, max_length=1000, description="A question for the shopper.")


class OrderListArgs(Args):
    days: int | None = Field(None, ge=1, le=3650, description="Only orders placed in the last `days` days.")


class OrderIdArgs(Args):
    order_id: str = Field(min_length=1, max_length=64)


class OrderLineArgs(Args):
    order_id: str = Field(min_length=1, max_length=64)
    line_id: str = Field(min_length=1, max_length=64)


class ReturnInitiateArgs(OrderLineArgs):
    reason: Literal[RETURN_REASONS] = Field(description="Why the item is returned.")  # type: ignore[valid-type]
    method: Literal[RETURN_METHODS] = Field(description="How the item goes back.")  # type: ignore[valid-type]


class ReturnExchangeArgs(OrderLineArgs):
    new_product_id: str = Field(min_length=1, max_length=64)
    new_variant_id: str | None = Field(None, max_length=80)


class PolicySearchArgs(Args):
    query: str = Field(min_length=1, max_length=500)
    top_k: int = Field(3, ge=1, le=10)


# --------------------------------------------------------------------------- helpers

def _product_summary(ctx: ToolContext, row: int) -> dict:
    cat = ctx.world.catalog
    item = {"product_id": cat.product_id(row), "title": cat.value("title", row)}
    for name in SEARCH_FIELDS_SHOWN:
        item[name] = cat.value(name, row)
    item["rating"] = round(float(item["rating"]), 1)
    item["category"] = CATEGORY_SEP.join(cat.value(f"category_l{i}", row) or "" for i in (1, 2, 3))
    item["in_stock"] = ctx.world.in_stock(row)
    return item


def _unknown_product(product_id: str) -> dict:
    return {"error": f"no product with id {product_id!r}"}


def _line_title(world: World, product_id: str, variant_id: str | None) -> str:
    row = world.row(product_id)
    title = world.catalog.value("title", row) if row is not None else product_id
    if variant_id:
        v = world.variant(product_id, variant_id)
        if v is not None:
            title = f"{title} ({v.attribute}: {v.value})"
    return title


def _cart_view(world: World) -> dict:
    lines = [ln.as_dict(_line_title(world, ln.product_id, ln.variant_id)) for ln in world.cart]
    cents = sum(round(ln.unit_price * 100) * ln.quantity for ln in world.cart)
    return {"lines": lines, "subtotal": cents / 100}


def _order_dict(order: Order, full: bool) -> dict:
    out: dict[str, Any] = {
        "order_id": order.order_id,
        "placed_at": order.placed_at.isoformat(),
        "status": order.status,
        "total": order.total,
        "n_items": sum(ln.quantity for ln in order.lines),
    }
    if full:
        out["eta"] = order.eta.isoformat() if order.eta else None
        out["delivered_at"] = order.delivered_at.isoformat() if order.delivered_at else None
        out["carrier"] = order.carrier
        out["tracking_number"] = order.tracking_number
        out["lines"] = [
            {
                "line_id": ln.line_id,
                "product_id": ln.product_id,
                "variant_id": ln.variant_id,
                "title": ln.title,
                "quantity": ln.quantity,
                "unit_price": ln.unit_price,
            }
            for ln in order.lines
        ]
    else:
        out["items"] = [ln.title for ln in order.lines]
    return out


def return_eligibility(world: World, order: Order, line: OrderLine) -> dict:
    """Whether `line` of `order` can be returned today, by the store policy. The single
    rule the return tools enforce and the verifiers use."""
    window = world.policy.return_window(line, world.membership_tier)
    out: dict[str, Any] = {"order_id": order.order_id, "line_id": line.line_id, "window_days": window}
    if (order.order_id, line.line_id) in world.returned_lines():
        return out | {"eligible": False, "reason": "a return was already initiated for this item"}
    if not world.policy.is_returnable_category(line):
        return out | {"eligible": False, "reason": f"{line.category_l3} items are not returnable"}
    if order.status != "delivered" or order.delivered_at is None:
        return out | {"eligible": False, "reason": f"order is {order.status}; only delivered items can be returned"}
    days = (world.clock.today() - order.delivered_at).days
    deadline = order.delivered_at + dt.timedelta(days=window)
    out |= {"days_since_delivery": days, "deadline": deadline.isoformat()}
    if days > window:
        return out | {"eligible": False, "reason": f"the {window}-day return window ended on {deadline.isoformat()}"}
    return out | {"eligible": True, "reason": "within the return window"}


def _find_order_line(world: World, order_id: str, line_id: str) -> tuple[Order, OrderLine] | dict:
    order = world.order(order_id)
    if order is None:
        return {"error": f"no order with id {order_id!r}"}
    line = order.line(line_id)
    if line is None:
        return {"error": f"order {order_id} has no line {line_id!r}"}
    return order, line


# --------------------------------------------------------------------------- tools

def catalog_search(ctx: ToolContext, args: CatalogSearchArgs) -> dict:
    """Search the catalog. Retrieval depth (`axes.top_k`) caps the results; at difficulty,
    lower-ranked near misses are promoted into the list at rate `axes.eps_rank`."""
    depth = ctx.axes.top_k
    filters = args.filters
    want_in_stock = bool(filters and filters.in_stock)
    hits = ctx.world.catalog.search(args.query, filters, top_k=min(1000, 2 * depth))
    rows = np.asarray(hits.rows, dtype=np.int64)
    if want_in_stock:  # the overlay may have sold out what the catalog still lists
        rows = rows[ctx.world.stock_mask_any_order(rows)]
    rows = rows.tolist()
    main, pool = rows[:depth], rows[depth:]
    if ctx.axes.eps_rank > 0 and main:
        rng = ctx.rand("search")
        shown: list[int] = []
        rest = list(main)
        while rest and len(shown) < depth:
            if rng.random() < ctx.axes.eps_rank:
                if pool:  # a near miss from beyond the depth, pushing the rest down
                    shown.append(pool.pop(int(rng.integers(len(pool)))))
                    continue
                if len(rest) > 1:  # no pool: a lower-ranked result jumps ahead
                    shown.append(rest.pop(int(rng.integers(1, len(rest)))))
                    continue
            shown.append(rest.pop(0))
        main = shown
    results = [_product_summary(ctx, r) for r in main[: args.top_k]]
    return {"query": args.query, "results": results, "n_results": len(results)}


def catalog_get_product(ctx: ToolContext, args: ProductIdArgs) -> dict:
    row = ctx.world.row(args.product_id)
    if row is None:
        return _unknown_product(args.product_id)
    product = ctx.world.catalog.product(row)
    product["stock"] = ctx.world.stock_of(row)
    product["in_stock"] = product["stock"] > 0
    product["n_variants"] = len(ctx.world.variants_of(args.product_id))
    return product


def catalog_get_variants(ctx: ToolContext, args: ProductIdArgs) -> dict:
    if ctx.world.row(args.product_id) is None:
        return _unknown_product(args.product_id)
    variants = [
        {
            "variant_id": v.variant_id,
            "attribute": v.attribute,
            "value": v.value,
            "price": v.price,
            "in_stock": ctx.world.variant_in_stock(args.product_id, v.variant_id),
        }
        for v in ctx.world.variants_of(args.product_id)
    ]
    return {"product_id": args.product_id, "variants": variants}


def cart_add(ctx: ToolContext, args: CartAddArgs) -> dict:
    world = ctx.world
    row = world.row(args.product_id)
    if row is None:
        return _unknown_product(args.product_id)
    variants = world.variants_of(args.product_id)
    if variants and args.variant_id is None:
        return {"error": "this product has variants; pass variant_id (see catalog_get_variants)"}
    if args.variant_id is not None and world.variant(args.product_id, args.variant_id) is None:
        return {"error": f"product {args.product_id} has no variant {args.variant_id!r}"}
    if not world.variant_in_stock(args.product_id, args.variant_id):
        return {"error": f"{args.product_id} is out of stock", "out_of_stock": True, "product_id": args.product_id}
    for line in world.cart:
        if line.product_id == args.product_id and line.variant_id == args.variant_id:
            line.quantity = min(MAX_QUANTITY, line.quantity + args.quantity)
            return {"ok": True, "line_id": line.line_id, "quantity": line.quantity, "cart": _cart_view(world)}
    price = float(world.catalog.numeric("price")[row])
    line_id = world.next_id("L")
    world.cart.append(CartLine(line_id, args.product_id, args.variant_id, args.quantity, price))
    return {"ok": True, "line_id": line_id, "quantity": args.quantity, "cart": _cart_view(world)}


def cart_remove(ctx: ToolContext, args: LineIdArgs) -> dict:
    line = ctx.world.cart_line(args.line_id)
    if line is None:
        return {"error": f"no cart line {args.line_id!r}"}
    ctx.world.cart.remove(line)
    return {"ok": True, "cart": _cart_view(ctx.world)}


def cart_set_quantity(ctx: ToolContext, args: CartSetQuantityArgs) -> dict:
    line = ctx.world.cart_line(args.line_id)
    if line is None:
        return {"error": f"no cart line {args.line_id!r}"}
    if args.quantity == 0:
        ctx.world.cart.remove(line)
    else:
        line.quantity = args.quantity
    return {"ok": True, "cart": _cart_view(ctx.world)}


def cart_view(ctx: ToolContext, args: NoArgs) -> dict:
    return _cart_view(ctx.world)


def user_get_visit_history(ctx: ToolContext, args: NoArgs) -> dict:
    world = ctx.world
    items = []
    for product_id, viewed_at in world.visit_history:
        row = world.row(product_id)
        if row is not None:
            items.append(_product_summary(ctx, row) | {"viewed_at": viewed_at})
    return {"viewed_products": items}


def ask_user(ctx: ToolContext, args: AskUserArgs) -> dict:
    """The shopper's reply arrives as the next user message (the env asks the shopper)."""
    return {"ok": True, "note": "question sent; the shopper replies in the next message"}


def order_list(ctx: ToolContext, args: OrderListArgs) -> dict:
    today = ctx.world.clock.today()
    orders = [
        _order_dict(o, full=False)
        for o in ctx.world.orders
        if args.days is None or (today - o.placed_at).days <= args.days
    ]
    return {"orders": orders}


def order_get(ctx: ToolContext, args: OrderIdArgs) -> dict:
    order = ctx.world.order(args.order_id)
    if order is None:
        return {"error": f"no order with id {args.order_id!r}"}
    return _order_dict(order, full=True)


def return_check_eligibility(ctx: ToolContext, args: OrderLineArgs) -> dict:
    found = _find_order_line(ctx.world, args.order_id, args.line_id)
    if isinstance(found, dict):
        return found
    return return_eligibility(ctx.world, *found)


def _start_return(ctx: ToolContext, args: OrderLineArgs, record: ReturnRecord) -> dict:
    found = _find_order_line(ctx.world, args.order_id, args.line_id)
    if isinstance(found, dict):
        return found
    verdict = return_eligibility(ctx.world, *found)
    if not verdict["eligible"]:
        return {"error": f"not eligible for return: {verdict['reason']}", "eligible": False}
    ctx.world.returns.append(record)
    out = {"ok": True, "return_id": record.return_id, "order_id": record.order_id, "line_id": record.line_id}
    return out | {"kind": record.kind}


def return_initiate(ctx: ToolContext, args: ReturnInitiateArgs) -> dict:
    record = ReturnRecord(
        return_id=f"R{len(ctx.world.returns) + 1}",
        order_id=args.order_id,
        line_id=args.line_id,
        kind="refund",
        reason=args.reason,
        method=args.method,
        created_at=ctx.world.clock.now().isoformat(),
    )
    return _start_return(ctx, args, record)


def return_exchange(ctx: ToolContext, args: ReturnExchangeArgs) -> dict:
    world = ctx.world
    if world.row(args.new_product_id) is None:
        return _unknown_product(args.new_product_id)
    if args.new_variant_id is not None and world.variant(args.new_product_id, args.new_variant_id) is None:
        return {"error": f"product {args.new_product_id} has no variant {args.new_variant_id!r}"}
    if not world.variant_in_stock(args.new_product_id, args.new_variant_id):
        return {"error": f"{args.new_product_id} is out of stock", "out_of_stock": True}
    record = ReturnRecord(
        return_id=f"R{len(world.returns) + 1}",
        order_id=args.order_id,
        line_id=args.line_id,
        kind="exchange",
        reason=None,
        method=None,
        new_product_id=args.new_product_id,
        new_variant_id=args.new_variant_id,
        created_at=world.clock.now().isoformat(),
    )
    return _start_return(ctx, args, record)


def policy_search(ctx: ToolContext, args: PolicySearchArgs) -> dict:
    rules = rank_rules(ctx.world.policy.rules, args.query, args.top_k)
    return {"rules": [{"rule_id": r.rule_id, "title": r.title, "text": r.text} for r in rules]}


def datetime_now(ctx: ToolContext, args: NoArgs) -> dict:
    now = ctx.world.clock.now()
    return {"now": now.isoformat(), "date": now.date().isoformat(), "weekday": now.strftime("%A")}


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args_model: type[Args]
    fn: Callable[[ToolContext, Any], dict]
    writes: tuple[str, ...] = ()  # id arguments of a tool that changes the world: each must have been shown

    def openai_schema(self) -> dict:
        params = self.args_model.model_json_schema()
        params.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("catalog_search", "Search the product catalog by text, with optional structured filters.",
             CatalogSearchArgs, catalog_search),
        Tool("catalog_get_product", "Get one product's full details and stock.", ProductIdArgs, catalog_get_product),
        Tool("catalog_get_variants", "List a product's variants (size, color, connector, ...).",
             ProductIdArgs, catalog_get_variants),
        Tool("cart_add", "Add a product (and variant) to the shopper's cart.", CartAddArgs, cart_add,
             writes=("product_id", "variant_id")),
        Tool("cart_remove", "Remove a line from the cart.", LineIdArgs, cart_remove, writes=("line_id",)),
        Tool("cart_set_quantity", "Set a cart line's quantity (0 removes it).", CartSetQuantityArgs,
             cart_set_quantity, writes=("line_id",)),
        Tool("cart_view", "Show the cart.", NoArgs, cart_view),
        Tool("user_get_visit_history", "Products the shopper viewed recently.", NoArgs, user_get_visit_history),
        Tool("ask_user", "Ask the shopper a question; the reply is the next user message.", AskUserArgs, ask_user),
        Tool("order_list", "List the shopper's orders.", OrderListArgs, order_list),
        Tool("order_get", "Get one order with its lines, status, ETA and tracking.", OrderIdArgs, order_get),
        Tool("return_check_eligibility", "Check whether an order line can be returned.", OrderLineArgs,
             return_check_eligibility),
        Tool("return_initiate", "Start a refund return for an order line.", ReturnInitiateArgs, return_initiate,
             writes=("order_id", "line_id")),
        Tool("return_exchange", "Return an order line in exchange for another product.", ReturnExchangeArgs,
             return_exchange, writes=("order_id", "line_id", "new_product_id", "new_variant_id")),
        Tool("policy_search", "Search the store policy.", PolicySearchArgs, policy_search),
        Tool("datetime_now", "The current date and time.", NoArgs, datetime_now),
    )
}


def validate_call(name: str, args: dict, allowed: tuple[str, ...]) -> Args:
    """Validate one tool call against this env's allow-list and the tool's schema.
    Raises InvalidAction naming the tool or the failing argument."""
    if name not in TOOLS:
        raise InvalidAction(f"unknown tool {name!r}")
    if name not in allowed:
        raise InvalidAction(f"tool {name!r} is not available in this environment")
    try:
        return TOOLS[name].args_model.model_validate(args)
    except ValidationError as exc:
        raise InvalidAction(describe_validation_error(exc, prefix=f"{name}.args.")) from None


@functools.lru_cache(maxsize=None)
def _schema(name: str) -> dict:
    return TOOLS[name].openai_schema()


def tool_schemas(allowed: tuple[str, ...]) -> list[dict]:
    """The OpenAI schemas of `allowed`, built once per tool (pydantic's schema generation
    costs milliseconds, and a journey builds its sub-environments at every reset). The
    dicts are shared: treat them as read-only."""
    return [_schema(name) for name in allowed]

"""The root schema, combined from each domain's query, mutation and subscription classes."""

from __future__ import annotations

import strawberry
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from graph.markets.queries import MarketQueries

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 5_000


@strawberry.type
class Query(MarketQueries):
    pass


schema = strawberry.Schema(
    query=Query,
    extensions=[
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
    ],
)

"""The Search API, server side: a search request's JSON turned into a checked plan
(`parse.parse_search_request`, `schema_rules.check_schema`), the tree an evaluator walks
(`plan`). Chroma's reference: shared/chroma-search-api.md, sections 2 and 3."""

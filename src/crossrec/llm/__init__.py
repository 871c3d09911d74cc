"""The language-model stage: one small contract (prompt -> text or schema-shaped JSON, with a token
budget and a timeout), local GGUF and OpenAI-compatible backends, a durable cache, and a template
fallback so a failing model never becomes an error page."""

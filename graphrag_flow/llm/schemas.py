"""The structured answers the LLM steps ask for (docs/llm-client.md), validated with pydantic.

The offline provider produces the same models, so every later stage has one input shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExtractedEntity(_Answer):
    name: str = Field(min_length=1)
    type: str
    description: str


class ExtractedRelationship(_Answer):
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    description: str
    # LLMs answer 1..10; the offline extractor uses co-occurrence counts, which may exceed 10.
    strength: float = Field(1.0, ge=0)


class GraphExtraction(_Answer):
    entities: list[ExtractedEntity]
    relationships: list[ExtractedRelationship]


class EntitySummary(_Answer):
    description: str


class Finding(_Answer):
    summary: str
    explanation: str


class CommunityReportAnswer(_Answer):
    title: str
    summary: str
    rating: float = Field(ge=0, le=10)
    rating_explanation: str
    findings: list[Finding]


#: schema NAME (wire contract) -> answer model
ANSWER_MODELS: dict[str, type[_Answer]] = {
    "graph_extraction": GraphExtraction,
    "entity_summary": EntitySummary,
    "community_report": CommunityReportAnswer,
}


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the shape OpenAI's strict mode accepts.

    Strict mode wants every property required and `additionalProperties: false` on every
    object, and rejects `default`/numeric bounds on some servers; bounds stay in the pydantic
    validation that runs on every answer.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return fix(defs[node["$ref"].split("/")[-1]])
            out = {
                k: ({name: fix(sub) for name, sub in v.items()} if k == "properties" else fix(v))
                for k, v in node.items()
                if k not in ("default", "title", "minimum", "maximum", "minLength")
            }
            if out.get("type") == "object":
                out["required"] = list(out.get("properties", {}))
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(schema)

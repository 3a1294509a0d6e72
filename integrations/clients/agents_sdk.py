"""The OpenAI Agents SDK over the platform's Responses API: one function tool, a forced first call.

Run: OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-sogni-... python agents_sdk.py
"""

import asyncio
import dataclasses
import os

from agents import (
    Agent,
    AgentHooks,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    ToolCallItem,
    ToolCallOutputItem,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

set_tracing_disabled(True)  # traces would go to OpenAI's servers with this key


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny and 21 degrees in {city}."


class AnswerOnceTheToolAnswered(AgentHooks):
    """A model as small as SmolLM2 calls the tool again and again under "auto": once the tool's output is in,
    ask for text ("none"). Capable models need neither this hook nor tool_choice="required"."""

    async def on_tool_end(self, context, agent, tool, result) -> None:
        agent.model_settings = dataclasses.replace(agent.model_settings, tool_choice="none")


async def main() -> str:
    client = AsyncOpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"])
    agent = Agent(
        name="Weather",
        instructions="Look up the weather with the get_weather tool, then answer in one sentence.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=os.environ.get("MODEL", "smollm2-135m-instruct-q4_1"), openai_client=client),
        model_settings=ModelSettings(tool_choice="required", max_tokens=256),  # the first turn calls the tool
        reset_tool_choice=False,  # the hook below sets the next turn's choice
        hooks=AnswerOnceTheToolAnswered(),
    )
    result = await Runner.run(agent, "What is the weather in Paris?", max_turns=4)
    calls = [item for item in result.new_items if isinstance(item, ToolCallItem)]
    outputs = [item for item in result.new_items if isinstance(item, ToolCallOutputItem)]
    assert calls and outputs, f"no function_call round trip: {[type(item).__name__ for item in result.new_items]}"
    assert isinstance(result.final_output, str), f"final output is not text: {result.final_output!r}"
    return f"{len(calls)} function_call(s) answered, final text {result.final_output.strip()[:60]!r}"


if __name__ == "__main__":
    print(asyncio.run(main()))

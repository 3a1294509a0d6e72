"""LangChain's ChatOpenAI against the platform: a reply, a stream and a forced tool call.

Run: OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-sogni-... python langchain_chat.py
"""

import os

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny and 21 degrees in {city}."


def main() -> str:
    llm = ChatOpenAI(
        model=os.environ.get("MODEL", "smollm2-135m-instruct-q4_1"),
        base_url=os.environ["OPENAI_BASE_URL"],
        api_key=os.environ["OPENAI_API_KEY"],
        max_tokens=48,
    )
    reply = llm.invoke("Say hello in one short sentence.")
    assert reply.content.strip(), reply
    streamed = "".join(chunk.content for chunk in llm.stream("Count from one to five."))
    assert streamed.strip(), "no text streamed"
    call = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert call.tool_calls and call.tool_calls[0]["name"] == "get_weather", call
    args = call.tool_calls[0]["args"]
    return f"invoke {reply.content.strip()[:30]!r}, stream {len(streamed)} chars, tool call args {args}"


if __name__ == "__main__":
    print(main())

"""Protocol clients (OpenAI chat/completions, TGI generate) on one httpx.AsyncClient, and SSE parsing."""

from .base import CONTENT, END, Api, Prompt, StreamFault, prompts_from_plan
from .client import make_client, perform
from .detect import APIS, BACKEND_CHOICES, Target, resolve_target
from .openai import OpenAIChat, OpenAICompletions
from .sse import SSEEvent, SSEParser
from .tgi import TGIGenerate

__all__ = [
    "APIS",
    "BACKEND_CHOICES",
    "CONTENT",
    "END",
    "Api",
    "OpenAIChat",
    "OpenAICompletions",
    "Prompt",
    "SSEEvent",
    "SSEParser",
    "StreamFault",
    "TGIGenerate",
    "Target",
    "make_client",
    "perform",
    "prompts_from_plan",
    "resolve_target",
]

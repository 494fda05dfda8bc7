"""Protocol clients (OpenAI chat/completions, TGI generate) on one httpx.AsyncClient, and SSE parsing."""

from harness.backends.base import CONTENT, END, Api, Prompt, StreamFault
from harness.backends.client import make_client, perform
from harness.backends.detect import APIS, BACKEND_CHOICES, Target, resolve_target
from harness.backends.openai import OpenAIChat, OpenAICompletions
from harness.backends.sender_process import senders_cpu_s
from harness.backends.sse import SSEEvent, SSEParser
from harness.backends.tgi import TGIGenerate

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
    "resolve_target",
    "senders_cpu_s",
]

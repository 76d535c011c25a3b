// Drives Claude Code through the TypeScript Agent SDK (npm @anthropic-ai/claude-agent-sdk), the
// way an application does: `pathToClaudeCodeExecutable` names the executable, the SDK spawns it
// with stream-json on a stdin it keeps open (a socket: Node's child_process), and inherits this
// process's environment (the SDK passes process.env on, minus NODE_OPTIONS and DEBUG).
//
//   node sdk_ts.mjs NODE_MODULES EXECUTABLE once     one query() with a string prompt: the first
//                                                    line of our stdin
//   node sdk_ts.mjs NODE_MODULES EXECUTABLE session  streaming input: each line of our stdin is
//                                                    one more user turn of the same session, sent
//                                                    when it arrives; EOF ends the session
//
// Each result goes to stdout as one JSON line {"type": "result", "subtype", "is_error",
// "result", "ms"} (`ms`: since query() was called, for bench/client.py); a failure of the SDK itself as {"type": "error", "message"} and exit status 1.
import { createInterface } from "node:readline";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, executable, mode] = process.argv.slice(2);
const sdk = await import(
  pathToFileURL(join(modules, "@anthropic-ai", "claude-agent-sdk", "sdk.mjs")).href
);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function say(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

async function* turns() {
  // One user message per line, each sent only once it arrives: stdin stays open in between.
  for (;;) {
    const next = await lines.next();
    if (next.done) return;
    yield {
      type: "user",
      message: { role: "user", content: next.value },
      parent_tool_use_id: null,
      session_id: "",
    };
  }
}

let prompt;
if (mode === "once") {
  const first = await lines.next();
  prompt = first.done ? "" : first.value;
} else if (mode === "session") {
  prompt = turns();
} else {
  say({ type: "error", message: `unknown mode ${mode}` });
  process.exit(2);
}

try {
  const started = performance.now();
  const run = sdk.query({
    prompt,
    options: {
      pathToClaudeCodeExecutable: executable,
      stderr: (data) => process.stderr.write(data),
    },
  });
  for await (const message of run) {
    if (message.type === "result") {
      say({
        type: "result",
        subtype: message.subtype,
        is_error: message.is_error,
        result: message.result ?? null,
        ms: performance.now() - started,
      });
    }
  }
} catch (error) {
  say({ type: "error", message: String(error?.stack ?? error) });
  process.exit(1);
}
process.exit(0);

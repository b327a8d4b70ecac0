// The doctor's handshake with node, run as: node -e "$(fetch.js)" TIMEOUT MODE BODY ACCEPT
// with the URL as the first line of standard input (never in argv: the engine records that).
// MODE is "sse" (wait for the endpoint event) or "post" (an initialize, wait for its result).
// Prints one line: QMSPROBE outcome=ok|fail|timeout|no-endpoint|bad-reply status=N ms=N err=text
const url = require("fs").readFileSync(0, "utf8").split("\n")[0].trim();
const [timeout, mode, body, accept] = process.argv.slice(1);
const lib = url.startsWith("https:") ? require("https") : require("http");
const t0 = Date.now();
function out(outcome, status, err) {
  console.log(`QMSPROBE outcome=${outcome} status=${status || ""} ms=${Date.now() - t0} err=${String(err || "").replace(/\s+/g, " ")}`);
  process.exit(outcome === "ok" ? 0 : 1);
}
setTimeout(() => out("timeout"), Number(timeout) * 1000);
const headers = mode === "sse" ? {Accept: "text/event-stream"} : {"Content-Type": "application/json", Accept: accept};
const req = lib.request(url, {method: mode === "sse" ? "GET" : "POST", headers}, (res) => {
  if (res.statusCode !== 200) out("fail", res.statusCode, `HTTP ${res.statusCode} ${res.statusMessage}`);
  let text = "";
  res.on("data", (chunk) => {
    text += chunk;
    if (mode === "sse" ? /^event: *endpoint\s*\r?\ndata:/m.test(text) : text.includes('"result"')) out("ok", 200);
  });
  res.on("end", () => out(mode === "sse" ? "no-endpoint" : "bad-reply", 200, text.slice(0, 200)));
});
req.on("error", (e) => out(e.code === "ETIMEDOUT" ? "timeout" : "fail", "", `${e.code || ""} ${e.message}`));
if (mode !== "sse") req.write(body);
req.end();

// Shared by the scripts that tests/compat/test_compat_javascript.py runs: the server to call,
// taken from the environment, and a way to report each step as JSON on stdout.

export const baseURL = need("AISERVICE_BASE_URL"); // http://127.0.0.1:PORT/v1
export const apiKey = need("AISERVICE_API_KEY");
export const model = need("AISERVICE_MODEL");

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
}

// Runs each named step in turn; a step that throws is reported as {error: ...} and the others
// still run. Prints {step: result, ...} as one JSON document.
export async function report(steps) {
  const results = {};
  for (const [name, step] of Object.entries(steps)) {
    try {
      results[name] = await step();
    } catch (error) {
      results[name] = { error: describe(error) };
    }
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

function describe(error) {
  return {
    name: error?.name ?? null,
    message: String(error?.message ?? error),
    // The openai SDK's APIError has `status`; the AI SDK's APICallError `statusCode`.
    status: error?.status ?? error?.statusCode ?? null,
    body: error?.responseBody ?? error?.error ?? null,
  };
}

// The AI SDK's generateText over two turns with the default OpenAI provider: the Responses API,
// stored, so the second call refers to the first answer with an item_reference.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText } from "ai";

import { apiKey, baseURL, model, report } from "./common.mjs";

const provider = createOpenAI({ baseURL, apiKey });
const settings = { model: provider(model), maxOutputTokens: 32, temperature: 0, maxRetries: 0 };

function summary(result) {
  return {
    text: result.text,
    finishReason: result.finishReason,
    usage: result.usage,
    responseId: result.response.id,
    modelId: result.response.modelId,
    warnings: result.warnings,
    requestBody: parsed(result.request.body),
  };
}

function parsed(body) {
  return typeof body === "string" ? JSON.parse(body) : (body ?? null);
}

let first;
await report({
  first: async () => {
    first = await generateText({
      ...settings,
      messages: [{ role: "user", content: "My name is Ada." }],
    });
    return summary(first);
  },
  second: async () => {
    const second = await generateText({
      ...settings,
      messages: [
        { role: "user", content: "My name is Ada." },
        ...first.response.messages,
        { role: "user", content: "What is my name?" },
      ],
    });
    return summary(second);
  },
});

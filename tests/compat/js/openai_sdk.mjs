// The official openai TypeScript SDK: a chat completion, a response and a legacy completion.
import OpenAI from "openai";

import { apiKey, baseURL, model, report } from "./common.mjs";

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });

await report({
  chat: async () => {
    const completion = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Say hello." }],
      max_tokens: 32,
      temperature: 0,
    });
    return {
      object: completion.object,
      id: completion.id,
      model: completion.model,
      finish_reason: completion.choices[0].finish_reason,
      content: completion.choices[0].message.content,
      usage: completion.usage,
    };
  },
  responses: async () => {
    const response = await client.responses.create({
      model,
      input: "Say hello.",
      max_output_tokens: 32,
      temperature: 0,
    });
    return {
      object: response.object,
      id: response.id,
      status: response.status,
      output_text: response.output_text,
      output_types: response.output.map((item) => item.type),
      usage: response.usage,
    };
  },
  completions: async () => {
    const completion = await client.completions.create({
      model,
      prompt: "Once upon a time",
      max_tokens: 16,
      temperature: 0,
    });
    return {
      object: completion.object,
      id: completion.id,
      finish_reason: completion.choices[0].finish_reason,
      text: completion.choices[0].text,
      usage: completion.usage,
    };
  },
});

// The AI SDK's generateObject with a nested zod schema, on the default OpenAI provider.
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject } from "ai";
import { z } from "zod";

import { apiKey, baseURL, model, report } from "./common.mjs";

const provider = createOpenAI({ baseURL, apiKey });
const Point = z.object({ x: z.number().int(), y: z.number().int() });
const Segment = z.object({ label: z.string().max(16), start: Point, end: Point });

await report({
  object: async () => {
    const result = await generateObject({
      model: provider(model),
      schema: Segment,
      prompt: "Draw the segment labelled 'ab' from (0, 0) to (3, 4).",
      maxOutputTokens: 128,
      temperature: 0,
      maxRetries: 0,
    });
    return {
      object: result.object,
      finishReason: result.finishReason,
      usage: result.usage,
      responseId: result.response.id,
      warnings: result.warnings,
    };
  },
});

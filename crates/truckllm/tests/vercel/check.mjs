// The Vercel AI SDK's default OpenAI model (the Responses API) through the gateway:
// generateText, streamText, and a tool call round trip. Prints one JSON line of what it saw.
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, tool, stepCountIs } from 'ai';
import { z } from 'zod';

const openai = createOpenAI({ baseURL: process.argv[2], apiKey: process.argv[3] ?? 'open-mode' });
const model = openai('gpt-4o-mini');
const text = await generateText({ model, prompt: 'say hi' });
let streamed = '';
const stream = streamText({ model, prompt: 'say hi' });
for await (const part of stream.textStream) streamed += part;
const usage = await stream.usage;
const withTool = await generateText({
  model,
  prompt: 'what is the weather in Paris?',
  tools: { weather: tool({ description: 'weather in a city', inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => ({ city, celsius: 21 }) }) },
  stopWhen: stepCountIs(3),
});
console.log(JSON.stringify({
  text: text.text, textUsage: text.usage, streamed, streamedUsage: usage,
  toolCalls: withTool.steps.flatMap(s => s.toolCalls.map(c => c.toolName)),
  toolSteps: withTool.steps.length, finalText: withTool.text,
}));

import type { Person } from "./people.js";

/**
 * The conversation as the messaging backend knows it: title, people and
 * message texts. The read-receipt service never sees message contents, so the
 * page loads them from the backend (in the demo, a JSON file beside the page).
 */
export interface ConversationHistory {
  readonly conversation: { readonly id: string; readonly title: string };
  readonly people: readonly Person[];
  /** Oldest first. */
  readonly messages: readonly ChatMessage[];
}

export interface ChatMessage {
  readonly id: string;
  readonly senderId: string;
  readonly text: string;
  readonly sentAt: Date;
}

export async function loadHistory(url: string, signal?: AbortSignal): Promise<ConversationHistory> {
  const response = await fetch(url, { signal, headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`could not load the conversation (HTTP ${response.status})`);
  return parseHistory(await response.json());
}

function parseHistory(json: unknown): ConversationHistory {
  const root = record(json, "history");
  const conversation = record(root.conversation, "conversation");
  const messages = list(root.messages, "messages").map((item, i) => {
    const message = record(item, `messages[${i}]`);
    const sentAt = new Date(text(message.sentAt, `messages[${i}].sentAt`));
    if (Number.isNaN(sentAt.getTime())) throw new Error(`messages[${i}].sentAt is not a time`);
    return {
      id: text(message.id, `messages[${i}].id`),
      senderId: text(message.senderId, `messages[${i}].senderId`),
      text: text(message.text, `messages[${i}].text`),
      sentAt,
    };
  });
  return {
    conversation: {
      id: text(conversation.id, "conversation.id"),
      title: text(conversation.title, "conversation.title"),
    },
    people: list(root.people, "people").map((item, i) => {
      const person = record(item, `people[${i}]`);
      return {
        id: text(person.id, `people[${i}].id`),
        name: text(person.name, `people[${i}].name`),
      };
    }),
    messages: messages.toSorted((a, b) => a.sentAt.getTime() - b.sentAt.getTime()),
  };
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${what} must be an object`);
  }
  return value as Record<string, unknown>;
}

function list(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${what} must be a list`);
  return value;
}

function text(value: unknown, what: string): string {
  if (typeof value !== "string") throw new Error(`${what} must be a string`);
  return value;
}

import { expect } from "vitest";
import { ReceiptError, type ReceiptErrorKind } from "../../src/domain/errors.js";
import type { TrackedMessageInput } from "../../src/domain/receipt-service.js";

/** A fixed day in the past, so that every time in a test is well before "now". */
export const t0 = Date.UTC(2026, 0, 1);
export const minutes = (n: number): number => t0 + n * 60_000;

export function groupMessage(
  messageId: string,
  conversationId: string,
  senderId: string,
  sentAt: number,
): TrackedMessageInput {
  return { conversationId, conversationType: "group", messageId, senderId, sentAt, receiverId: "" };
}

export function c2cMessage(
  messageId: string,
  conversationId: string,
  senderId: string,
  receiverId: string,
  sentAt: number,
): TrackedMessageInput {
  return { conversationId, conversationType: "c2c", messageId, senderId, sentAt, receiverId };
}

/** Asserts that a call fails with the given domain error kind (and field, when given). */
export async function expectReceiptError(
  call: Promise<unknown>,
  kind: ReceiptErrorKind,
  field?: string,
): Promise<ReceiptError> {
  const error = await call.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error, `expected a ${kind} error`).toBeInstanceOf(ReceiptError);
  const receiptError = error as ReceiptError;
  expect(receiptError.kind).toBe(kind);
  if (field !== undefined) expect(receiptError.field).toBe(field);
  return receiptError;
}

export const users = (prefix: string, count: number): string[] =>
  Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(6, "0")}`);

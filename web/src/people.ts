import { h } from "./dom.js";

/** How people look in the chat: display names, initials and avatar colours. */

export interface Person {
  readonly id: string;
  readonly name: string;
}

export class People {
  readonly #byId: ReadonlyMap<string, Person>;

  constructor(people: readonly Person[]) {
    this.#byId = new Map(people.map((person) => [person.id, person]));
  }

  name(userId: string): string {
    return this.#byId.get(userId)?.name ?? userId;
  }

  firstName(userId: string): string {
    return this.name(userId).split(/\s+/)[0] ?? userId;
  }
}

export function initials(name: string): string {
  const words = name
    .trim()
    .split(/[\s._-]+/)
    .filter(Boolean);
  const letters =
    words.length >= 2 ? [words[0]?.[0], words[words.length - 1]?.[0]] : [name[0], name[1]];
  return letters.join("").toUpperCase();
}

/** A stable hue per user id, so that a person keeps their colour across pages. */
export function avatarHue(userId: string): number {
  let hash = 0;
  for (const char of userId) hash = (hash * 31 + (char.codePointAt(0) ?? 0)) >>> 0;
  return hash % 360;
}

export function avatar(
  userId: string,
  name: string,
  size: "small" | "medium" = "medium",
): HTMLElement {
  const element = h("span", { class: `avatar avatar-${size}`, title: name, "aria-hidden": "true" });
  element.textContent = initials(name);
  element.style.setProperty("--hue", String(avatarHue(userId)));
  return element;
}

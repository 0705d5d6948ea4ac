/** A few lines of DOM building, so that views read like the markup they produce. */

type Child = Node | string | null | undefined | false;
type Attributes = Readonly<Record<string, string | number | boolean | undefined>>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((child): child is Node | string => Boolean(child)));
  return element;
}

const svgNs = "http://www.w3.org/2000/svg";

/** Line icons drawn as SVG paths (24×24 grid, stroked with the current text colour). */
const iconPaths = {
  check: ["M4 12.5l5 5L20 6.5"],
  "double-check": ["M1.5 12.5l4.5 4.5L16.5 6.5", "M8 13.5l3.5 3.5L22 6.5"],
  close: ["M6 6l12 12", "M18 6L6 18"],
  people: [
    "M9 11a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7z",
    "M2.5 20c0-3.6 2.9-6 6.5-6s6.5 2.4 6.5 6",
    "M16 4.3a3.5 3.5 0 0 1 0 6.4",
    "M18 14.4c2.1.7 3.5 2.7 3.5 5.6",
  ],
} as const;

export type IconName = keyof typeof iconPaths;

export function icon(name: IconName): SVGSVGElement {
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", `icon icon-${name}`);
  for (const d of iconPaths[name]) {
    const path = document.createElementNS(svgNs, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

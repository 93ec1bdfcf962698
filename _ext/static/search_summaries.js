// Search results: leave the math out of the text snippets. A snippet is cut from the page's HTML, where math is
// still TeX source (MathJax typesets it only on the page itself), so it would show as raw TeX, often cut in half.
(function () {
  if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;
  const htmlToText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const page = new DOMParser().parseFromString(htmlString, "text/html");
    page.querySelectorAll(".math, mjx-container").forEach((math) => math.replaceWith(" … "));
    return htmlToText(page.documentElement.outerHTML, anchor);
  };
})();

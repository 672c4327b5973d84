// Runs before the page paints (a classic script in <head>), so a reader who chose
// a theme never sees the other one flash. Without a choice, CSS follows the OS.
(function () {
  try {
    var theme = localStorage.getItem("ragserve-theme");
    if (theme === "light" || theme === "dark") {
      document.documentElement.dataset.theme = theme;
    }
  } catch (e) {
    /* storage disabled: follow the OS */
  }
})();

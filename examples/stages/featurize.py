"""Stage `featurize`: add the areas and the ratio of petal and sepal to the prepared rows."""

from pathlib import Path

import pandas as pd

out = Path("data/features")
out.mkdir(parents=True, exist_ok=True)
for part in ("train", "test"):
    rows = pd.read_csv(f"data/prepared/{part}.csv")
    rows.insert(4, "petal_area", rows["petal_length"] * rows["petal_width"])
    rows.insert(5, "sepal_area", rows["sepal_length"] * rows["sepal_width"])
    rows.insert(6, "petal_to_sepal", rows["petal_length"] / rows["sepal_length"])
    rows.to_csv(out / f"{part}.csv", index=False)
print("featurize: petal_area, sepal_area, petal_to_sepal")

"""Label names of the classification split files, in column order (``protocol.md`` §2.1–§2.2).

Plain tuples with no imports: task files read them at registry discovery, which must stay cheap.
"""

CTRATE_LABELS = (
    "Medical material",
    "Arterial wall calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Coronary artery wall calcification",
    "Hiatal hernia",
    "Lymphadenopathy",
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
)
RADCHESTCT_LABELS = (  # header spelling, incl. the published typo "Hietal Hernia"
    "Medical material",
    "Calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Hietal Hernia",
    "Lymphadenopathy",
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
)
